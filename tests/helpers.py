"""Helpers shared by tests: greedy generation with transformers, as a reference for vLLM."""

from __future__ import annotations

import json
import math
from pathlib import Path

from vlmquant.prompts import Prompt, load_image

INFER_MAX_TOKENS = 16  # tokens per prompt in the `infer_runs` fixture


def _load(model_dir: Path):
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    processor = AutoProcessor.from_pretrained(model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.bfloat16)
    return processor, model


def _inputs(processor, p: Prompt):
    content = ([{"type": "image"}] if p.image else []) + [{"type": "text", "text": p.text}]
    text = processor.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
    )
    images = [load_image(p.image)] if p.image else None
    return processor(text=[text], images=images, return_tensors="pt")


def hf_greedy(model_dir: Path, prompts: list[Prompt], max_new_tokens: int) -> list[list[int]]:
    """Greedy token ids from transformers for each prompt, with the model's chat template."""
    import torch

    processor, model = _load(model_dir)
    out = []
    for p in prompts:
        inputs = _inputs(processor, p)
        with torch.no_grad():
            ids = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        out.append(ids[0, inputs["input_ids"].shape[1] :].tolist())
    return out


def logit_gap_in_bf16_ulps(
    model_dir: Path, prompt: Prompt, prefix: list[int], a: int, b: int
) -> float:
    """|logit(a) - logit(b)| after prompt+prefix, in BF16 units in the last place."""
    import torch

    processor, model = _load(model_dir)
    inputs = _inputs(processor, prompt)
    ids = torch.cat([inputs["input_ids"], torch.tensor([prefix], dtype=torch.long)], dim=1)
    extra = {
        k: v
        for k, v in inputs.items()
        if k not in ("input_ids", "attention_mask", "mm_token_type_ids")
    }
    with torch.no_grad():
        logits = model(input_ids=ids, **extra).logits[0, -1].float()
    la, lb = float(logits[a]), float(logits[b])
    ulp = 2.0 ** (math.floor(math.log2(max(abs(la), abs(lb), 1e-30))) - 7)
    return abs(la - lb) / ulp


def samples(folder: Path) -> list[dict]:
    """The rows of an `infer` output's samples.jsonl."""
    return [json.loads(x) for x in (folder / "samples.jsonl").read_text().splitlines()]
