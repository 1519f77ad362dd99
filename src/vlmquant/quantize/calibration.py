"""Calibration data: captions (and their images) from a calib set -> batches -> a forward loop.

Text mode feeds raw captions to the language model, left-padded and truncated to `calib_seq`
tokens, as hf_ptq's text dataloader does. Image-text mode feeds the whole VLM a chat turn
"<image> Describe this picture." answered by the caption, so the vision tower and the
language model both see real image activations.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vlmquant.core.errors import BadInput

IMAGE_QUESTION = "Describe this picture."


@dataclass(frozen=True)
class Sample:
    text: str
    file_name: str | None = None


def jsonl_for(calib: Path) -> Path:
    return calib if calib.suffix == ".jsonl" else calib.with_suffix(".jsonl")


def load_samples(
    calib: Path, calib_size: int, allow_fewer: bool, need_images: bool
) -> list[Sample]:
    """The first `calib_size` captions of the set (the calib stage already shuffled them)."""
    if not calib.is_file():
        raise BadInput(f"--calib {calib}: no such file; build it with `vlmquant calib`")
    rows_path = jsonl_for(calib)
    if rows_path.is_file():
        samples = [
            Sample(r["text"], r.get("file_name"))
            for r in map(json.loads, rows_path.read_text().splitlines())
            if r.get("text")
        ]
    elif need_images:
        raise BadInput(
            f"--calib {calib}: image-text calibration needs {rows_path.name} beside it "
            "(file_name per caption); rebuild the set with `vlmquant calib`"
        )
    else:
        samples = [Sample(line) for line in calib.read_text().splitlines() if line.strip()]
    if not samples:
        raise BadInput(f"--calib {calib}: no captions in it; rebuild it with `vlmquant calib`")
    if calib_size < 1:
        raise BadInput(f"--calib-size {calib_size}: must be at least 1")
    if len(samples) < calib_size and not allow_fewer:
        raise BadInput(
            f"--calib {calib}: holds {len(samples)} captions, --calib-size "
            f"{calib_size} asked; lower --calib-size or pass --allow-fewer"
        )
    return samples[:calib_size]


def resolve_images(samples: list[Sample], images: Path | None) -> list[Path]:
    if images is None:
        raise BadInput(
            "--calib-mode image-text needs --images DIR (the folder holding the "
            "calib set's file_name images, e.g. COCO train2017)"
        )
    if not images.is_dir():
        raise BadInput(f"--images {images}: no such folder; pass the folder of calibration images")
    paths, missing = [], []
    for s in samples:
        p = images / s.file_name if s.file_name else None
        (paths if p is not None and p.is_file() else missing).append(p or s.text)
    if missing:
        raise BadInput(
            f"--images {images}: {len(missing)} of {len(samples)} calibration images "
            f"missing (first: {missing[0]}); put them there or use --calib-mode text"
        )
    return paths


def batches(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def text_forward_loop(
    language_model,
    tokenizer,
    samples: list[Sample],
    batch_size: int,
    calib_seq: int,
    device: str,
    progress,
) -> Callable[[], None]:
    import torch

    def loop() -> None:
        tokenizer.padding_side = "left"
        with torch.no_grad():
            for chunk in progress(batches(samples, batch_size), desc="calibrate (text)"):
                enc = tokenizer(
                    [s.text for s in chunk],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=calib_seq,
                ).to(device)
                language_model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])

    return loop


def image_text_forward_loop(
    model,
    processor,
    samples: list[Sample],
    image_paths: list[Path],
    batch_size: int,
    device: str,
    progress,
) -> Callable[[], None]:
    """Image+text batches are not truncated: a cut could split an image's placeholder tokens
    from its patches. A COCO picture at the processor's default size plus a caption is ~400
    tokens."""
    import torch
    from PIL import Image

    def loop() -> None:
        processor.tokenizer.padding_side = "left"
        pairs = list(zip(samples, image_paths, strict=True))
        with torch.no_grad():
            for chunk in progress(batches(pairs, batch_size), desc="calibrate (image+text)"):
                texts = [
                    processor.apply_chat_template(
                        [
                            {
                                "role": "user",
                                "content": [
                                    {"type": "image"},
                                    {"type": "text", "text": IMAGE_QUESTION},
                                ],
                            },
                            {"role": "assistant", "content": s.text},
                        ],
                        tokenize=False,
                    )
                    for s, _ in chunk
                ]
                images = [Image.open(p).convert("RGB") for _, p in chunk]
                enc = processor(text=texts, images=images, return_tensors="pt", padding=True)
                model(**{k: v.to(device) for k, v in enc.items()})

    return loop
