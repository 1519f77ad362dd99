"""Calibration data: captions (and their images) from a calib set -> batches -> a forward loop.

Text mode is hf_ptq's own: ModelOpt's dataloader tokenizes the captions (left-padded with the
EOS token to the longest of the set, truncated to `calib_seq` tokens) and ModelOpt's forward
loop feeds them to the language model. Image-text mode feeds the whole VLM a chat turn
"<image> Describe this picture." answered by the caption, so the vision tower and the
language model both see real image activations.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vlmquant.core.errors import BadInput, not_a_file

IMAGE_QUESTION = "Describe this picture."


@dataclass(frozen=True)
class Sample:
    text: str
    file_name: str | None = None


def image_rows_for(calib: Path) -> Path:
    """Where image-text calibration reads file names: the `.jsonl` itself or the one beside a
    `.txt` (the calib stage writes both, same captions in the same order)."""
    return calib if calib.suffix == ".jsonl" else calib.with_suffix(".jsonl")


def _read_text(path: Path, what: str) -> str:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM is no caption text
    except UnicodeDecodeError as e:
        raise BadInput(
            f"{what} {path}: not UTF-8 text (byte {e.start}); pass a calibration set "
            "built by `vlmquant calib`"
        ) from None
    if "\x00" in text:  # valid UTF-8, but no text file holds NUL: a binary file renamed
        raise BadInput(
            f"{what} {path}: holds NUL bytes (line {text[: text.index(chr(0))].count(chr(10)) + 1})"
            ", so it is not a text file; pass a calibration set built by `vlmquant calib`"
        )
    return text


def _jsonl_rows(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(_read_text(path, "--calib").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise BadInput(
                f"--calib {path}: line {n} is not JSON; rebuild the set with `vlmquant calib`"
            ) from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise BadInput(
                f'--calib {path}: line {n} has no "text" string (hf_ptq reads that field); '
                "rebuild the set with `vlmquant calib`"
            )
        rows.append(row)
    return rows


def load_samples(
    calib: Path, calib_size: int, allow_fewer: bool, need_images: bool
) -> tuple[list[Sample], Path]:
    """The first `calib_size` captions of the set (the calib stage already shuffled them), and
    the file they were read from: `--calib` itself, or for image-text mode the `.jsonl` with
    the file names."""
    if not calib.is_file():
        what = not_a_file(calib)
        raise BadInput(f"--calib {calib}: {what}; pass the .txt `vlmquant calib` builds")
    if calib.suffix not in (".txt", ".jsonl"):  # a manifest's JSON lines are no captions
        raise BadInput(
            f"--calib {calib}: a calibration set is the .txt (one caption a line) or the .jsonl "
            "that `vlmquant calib` writes; pass one of those"
        )
    source = image_rows_for(calib) if need_images else calib
    if need_images and not source.is_file():
        raise BadInput(
            f"--calib {calib}: image-text calibration needs {source.name} beside it "
            "(file_name per caption); rebuild the set with `vlmquant calib`"
        )
    if source.suffix == ".jsonl":  # ModelOpt's reader (get_dataset_samples) skips empty texts
        samples = [Sample(r["text"], r.get("file_name")) for r in _jsonl_rows(source) if r["text"]]
    else:
        text = _read_text(source, "--calib")
        samples = [Sample(line) for line in text.splitlines() if line.strip()]
    if not samples:
        raise BadInput(f"--calib {calib}: no captions in it; rebuild it with `vlmquant calib`")
    if calib_size < 1:
        raise BadInput(f"--calib-size {calib_size}: must be at least 1")
    if len(samples) < calib_size and not allow_fewer:
        raise BadInput(
            f"--calib {calib}: holds {len(samples)} captions, --calib-size "
            f"{calib_size} asked; lower --calib-size or pass --allow-fewer"
        )
    return samples[:calib_size], source


def resolve_images(samples: list[Sample], images: Path | None) -> list[Path]:
    if images is None:
        raise BadInput(
            "--calib-mode image-text needs --images DIR (the folder holding the "
            "calib set's file_name images, e.g. COCO train2017; its manifest records none)"
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
    from PIL import Image, UnidentifiedImageError

    for p in dict.fromkeys(paths):  # each file once: a header check, no decoding
        try:
            with Image.open(p) as im:
                im.verify()
        except (OSError, UnidentifiedImageError, SyntaxError):
            raise BadInput(
                f"--images {images}: {p.name} is not a readable image; restore it or rebuild "
                "the calibration set"
            ) from None
    return paths


def batches(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def hf_ptq_tokenizer(model_dir: Path):
    """The tokenizer as hf_ptq prepares it (example_utils.get_tokenizer + load_model): padding
    with the EOS token (unless the pad token is `<unk>`), on the left."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token != "<unk>" or tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def text_forward_loop(
    tokenizer, calib: Path, samples: list[Sample], batch_size: int, calib_seq: int, device: str
) -> tuple[Callable, int]:
    """hf_ptq's text calibration, built from the same ModelOpt blocks it uses:
    `get_dataset_dataloader` tokenizes all samples in one call (so every row is left-padded to
    the longest sample of the whole set, at most `calib_seq` tokens, and the pad positions'
    activations enter the max like hf_ptq's do), and `create_forward_loop` runs the batches
    with the KV cache off. The samples go in as a `.jsonl` with a `text` field, the format
    hf_ptq's `--dataset FILE.jsonl` reads: `--calib` itself when it is one, else a temporary
    one. Returns the loop and the number of rows it feeds."""
    import tempfile

    from modelopt.torch.utils.dataset_utils import create_forward_loop, get_dataset_dataloader

    with tempfile.TemporaryDirectory(prefix="vlmquant-calib-") as tmp:
        rows = calib
        if calib.suffix != ".jsonl":
            rows = Path(tmp) / "calib.jsonl"
            rows.write_text("".join(json.dumps({"text": s.text}) + "\n" for s in samples))
        loader = get_dataset_dataloader(
            dataset_name=str(rows),
            tokenizer=tokenizer,
            batch_size=batch_size,
            num_samples=len(samples),
            max_sample_length=calib_seq,
            device=device,
        )
    return create_forward_loop(dataloader=loader), len(loader.dataset)


def unpadded_text_forward_loop(
    tokenizer, samples: list[Sample], calib_seq: int, device: str
) -> tuple[Callable, int]:
    """Text calibration with no pad positions (`--calib-padding none`, opt-in): each sample
    alone, truncated at `calib_seq` tokens, positions from 0, so only real tokens' activations
    enter the max (hf_ptq's padded batches also shift every row's rotary positions by its
    padding)."""
    import torch

    encoded = [
        tokenizer(s.text, truncation=True, max_length=calib_seq, return_tensors="pt")["input_ids"]
        for s in samples
    ]

    def loop(model) -> None:
        with torch.no_grad():
            for ids in encoded:
                model(input_ids=ids.to(device), use_cache=False)

    return loop, len(encoded)


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

    def loop(_module=None) -> None:
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
