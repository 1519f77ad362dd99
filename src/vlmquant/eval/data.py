"""The held-out evaluation set: captions the calibration did not use, paragraphs the project
ships, and image+text samples on pictures the project draws.

Each sample is tokenized once with the checkpoint's processor, so base and quantized models see
identical token ids (and pixels).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmquant.core.errors import BadInput, not_a_file
from vlmquant.synthetic import COLOURS, SHAPES, draw


@dataclass
class EvalSample:
    group: str  # "text" | "image_text"
    text: str
    image: str | None = None


def shipped_paragraphs() -> list[str]:
    from vlmquant.synthetic import paragraphs

    return paragraphs()


def held_out_captions(calib: Path | None) -> list[str]:
    """Captions from the calib set's source that the set itself does not contain."""
    if calib is None:
        return []
    from vlmquant.calib import calib_stage, sources

    manifest_path = calib_stage.output_paths(calib)["manifest"]
    if not calib.is_file() or not manifest_path.is_file():
        raise BadInput(
            f"--calib {calib}: no calibration set with a manifest there; pass the "
            ".txt that `vlmquant calib` wrote, or omit --calib"
        )
    from vlmquant.results.calib import Manifest

    source = Manifest.read(manifest_path).source
    if source.kind == "demo":
        captions = sources.demo_captions()
    elif source.kind == "coco" and source.path and Path(source.path).is_file():
        captions = sources.coco_captions(Path(source.path))
    elif source.kind == "hf-dataset" and source.path and Path(source.path).exists():
        captions = sources.hf_captions(Path(source.path), source.text_column or "caption")
    else:
        return []
    used = set(calib.read_text().splitlines())
    return [c.text for c in sources.clean(captions)[0] if c.text not in used]


def image_samples(n: int, seed: int) -> list[EvalSample]:
    rng = random.Random(seed)
    colours = [c for c in COLOURS if c != "white"]
    out = []
    for _ in range(n):
        colour, shape = rng.choice(colours), rng.choice(SHAPES)
        out.append(
            EvalSample(
                "image_text", f"A {colour} {shape} on a white background.", f"{colour}_{shape}"
            )
        )
    return out


def user_texts(path: Path) -> list[str]:
    """`--text FILE`: one sample a line, UTF-8; blank lines skipped."""
    if not path.is_file():
        what = not_a_file(path)
        raise BadInput(f"--text {path}: {what}; pass a UTF-8 text file, one sample a line")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # a BOM is no text
    except UnicodeDecodeError as e:
        raise BadInput(
            f"--text {path}: not UTF-8 (byte {e.start}); convert it, e.g. iconv -t UTF-8"
        ) from None
    texts = [line for line in lines if line.strip()]
    if not texts:
        raise BadInput(f"--text {path}: no text in it; put one sample a line")
    return texts


def build_eval_set(
    calib: Path | None,
    max_samples: int,
    image_samples_n: int,
    seed: int,
    text: Path | None = None,
    with_builtin: bool = False,
) -> list[EvalSample]:
    """Text samples: `--text`'s lines (first, all of them), then, unless `--text` is given
    without `with_builtin`, the shipped paragraphs and held-out captions up to `max_samples`."""
    own = user_texts(text) if text is not None else []
    builtin: list[str] = []
    if text is None or with_builtin:
        captions = held_out_captions(calib)
        random.Random(seed).shuffle(captions)
        builtin = (shipped_paragraphs() + captions)[:max_samples]
    samples = [EvalSample("text", t) for t in own + builtin]
    samples += image_samples(image_samples_n, seed)
    if not samples:
        raise BadInput("eval: the evaluation set is empty; raise --max-samples or --image-samples")
    return samples


def encode(processor, sample: EvalSample, seq_len: int) -> dict[str, Any]:
    """Token ids (and pixels) for one sample; text samples are plain text cut at seq_len."""
    if sample.image is None:
        ids = processor.tokenizer(
            sample.text, truncation=True, max_length=seq_len, return_tensors="pt"
        )
        return {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"]}
    messages = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": "Describe this picture."}],
        },
        {"role": "assistant", "content": sample.text},
    ]
    text = processor.apply_chat_template(messages, tokenize=False)
    enc = processor(text=[text], images=[draw(sample.image)], return_tensors="pt")
    return dict(enc)
