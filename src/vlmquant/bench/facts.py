"""What a bench result measures its engines against: the device copy bandwidth (the roofline),
the bytes one decode step reads from a checkpoint, the card, and the ratios of each model to
the first."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from vlmquant.checkpoint.headers import tensors


def copy_bandwidth(device: str, nbytes: int = 1 << 30, repeats: int = 10) -> float:
    """Device-to-device copy, bytes read + written per second (the roofline's numerator)."""
    import torch

    src = torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device).fill_(1)
    dst = torch.empty_like(src)
    dst.copy_(src)
    if device == "cuda":
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            dst.copy_(src)
        end.record()
        torch.cuda.synchronize()
        seconds = start.elapsed_time(end) / 1000
    else:
        t0 = time.perf_counter()
        for _ in range(repeats):
            dst.copy_(src)
        seconds = time.perf_counter() - t0
    del src, dst
    return 2 * nbytes * repeats / seconds


def decode_bytes(checkpoint: Path) -> dict[str, int]:
    """Bytes one decode step reads: every language-model tensor as stored, plus lm_head (or the
    tied embedding matrix). The embedding lookup reads one row and is left out."""
    infos = tensors(checkpoint)
    names = {t.name for t in infos}
    lm = sum(
        t.nbytes
        for t in infos
        if t.name.startswith(
            (
                "model.layers.",
                "model.norm.",
                "model.language_model.layers.",
                "model.language_model.norm.",
            )
        )
    )
    head = [t for t in infos if t.name == "lm_head.weight"] or [
        t for t in infos if t.name.endswith("embed_tokens.weight") and "lm_head.weight" not in names
    ]
    return {
        "language_model": lm,
        "lm_head": sum(t.nbytes for t in head),
        "total": lm + sum(t.nbytes for t in head),
    }


def ratios(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Each later model against the first, per mode: the headline ratios."""
    out: dict[str, Any] = {}
    base = {(r["mode"]): r for r in results if r["model_index"] == 0}
    for r in results:
        b = base.get(r["mode"])
        if r["model_index"] == 0 or b is None:
            continue
        key = f"{Path(r['model']).name} / {Path(b['model']).name} ({r['mode']})"
        entry = {"single_stream_tok_s": r["single_stream"]["tok_s"] / b["single_stream"]["tok_s"]}
        if r.get("kv_cache_tokens") and b.get("kv_cache_tokens"):
            entry["kv_cache_tokens"] = r["kv_cache_tokens"] / b["kv_cache_tokens"]
        if "image_prefill_s" in r and "image_prefill_s" in b:
            entry["image_prefill_speedup"] = (
                b["image_prefill_s"]["median"] / r["image_prefill_s"]["median"]
            )
        for mr, mb in zip(r["matrix"], b["matrix"], strict=True):
            entry[f"c{mr['concurrency']} {mr['input_len']}->{mr['output_len']} output_tok_s"] = (
                mr["output_tok_s"] / mb["output_tok_s"]
            )
        out[key] = entry
    return out


def card_name(device: str) -> str:
    if device != "cuda":
        return "cpu"
    import torch

    return torch.cuda.get_device_name()
