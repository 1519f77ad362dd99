"""Helpers shared by tests: greedy generation with transformers, as a reference for vLLM."""

from __future__ import annotations

from pathlib import Path

from vlmquant.prompts import Prompt, load_image


def hf_greedy(model_dir: Path, prompts: list[Prompt], max_new_tokens: int) -> list[list[int]]:
    """Greedy token ids from transformers for each prompt, with the model's chat template."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    processor = AutoProcessor.from_pretrained(model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.bfloat16)
    out = []
    for p in prompts:
        content = ([{"type": "image"}] if p.image else []) + [{"type": "text", "text": p.text}]
        text = processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        images = [load_image(p.image)] if p.image else None
        inputs = processor(text=[text], images=images, return_tensors="pt")
        with torch.no_grad():
            ids = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        out.append(ids[0, inputs["input_ids"].shape[1] :].tolist())
    return out
