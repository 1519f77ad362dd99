"""Chat messages for vLLM's `LLM.chat`: text, or one image and text."""

from __future__ import annotations

from typing import Any


def chat_messages(text: str, image: Any = None) -> list[dict[str, Any]]:
    """`image` is a drawn-image name, an image file or a PIL image."""
    from vlmquant.prompts import load_image

    if not image:
        return [{"role": "user", "content": text}]
    if isinstance(image, str):
        image = load_image(image)
    return [
        {
            "role": "user",
            "content": [
                {"type": "image_pil", "image_pil": image},
                {"type": "text", "text": text},
            ],
        }
    ]
