"""The checks of a checkpoint's numbers: every FP8 weight with its scale and no FP8 claimed over
BF16 weights (`scale_problems`), scales positive and finite (`bad_scales`), no NaN codes in FP8
weights (`nan_fp8_codes`), and a loaded model's parameters finite (`check_finite`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlmquant.checkpoint.headers import SCALE_SUFFIXES, tensors
from vlmquant.checkpoint.names import hub_name
from vlmquant.core.errors import BadInput

FP8_DTYPES = ("F8_E4M3", "F8_E5M2")
KV_SCALES = ("k_scale", "v_scale")
FP8_NAN_BITS = {"F8_E4M3": (0x7F, 0x7F), "F8_E5M2": (0x7C, 0x7C)}  # (mask, value)


def scale_problems(path: Path) -> list[str]:
    """What an export's weights and its quantization config disagree on: an FP8 weight without
    its weight_scale (the loaders stop on it, or read the codes unscaled), a config that says
    FP8 over weights with no FP8 tensor (a BF16 checkpoint with an export's config copied in),
    and k/v cache scales where the config names no KV-cache format (vLLM would run a BF16
    cache and drop them)."""
    from vlmquant.checkpoint.quant import quant_info

    stored = {hub_name(t.name): t for t in tensors(path)}
    fp8 = [n for n, t in sorted(stored.items()) if t.dtype in FP8_DTYPES]
    wrong = [f"{n} is stored FP8 without its weight_scale" for n in fp8
             if n.endswith(".weight") and n + "_scale" not in stored]  # fmt: skip
    info = quant_info(path) or {}
    if "FP8" in str(info.get("quant_algo") or "") and not fp8:
        wrong.append(
            f"the quantization config says {info['quant_algo']}, but no tensor is stored in FP8 "
            "(a BF16 checkpoint with an export's config copied in?)"
        )
    kv = sorted(n for n in stored if n.endswith(KV_SCALES))
    if kv and not info.get("kv_cache_quant_algo"):
        wrong.append(
            f"{kv[0]} is a KV-cache scale, but the quantization config names no KV-cache format "
            "(kv_cache_quant_algo), so vLLM would run a BF16 cache and drop it"
        )
    return wrong


def stored_tensors(path: Path, pick) -> Iterator[tuple[Any, Any]]:
    """(TensorInfo, tensor) for each stored tensor `pick(info)` selects, one file open at a
    time: the tensors are read, the rest of the checkpoint is not."""
    from safetensors import safe_open

    by_file: dict[str, list] = {}
    for t in tensors(path):
        if pick(t):
            by_file.setdefault(t.file, []).append(t)
    for file, infos in sorted(by_file.items()):
        with safe_open(str(path / file), "pt") as f:
            for t in infos:
                yield t, f.get_tensor(t.name)


def bad_scales(path: Path) -> list[str]:
    """Scale tensors (ModelOpt's weight/input/k/v scales) holding a value vLLM cannot run: NaN,
    infinite, zero or negative (a zero weight scale silences its layer; NaN poisons every
    token after it). Reads the scales only: small tensors."""
    import torch

    bad = []
    for t, v in stored_tensors(path, lambda t: t.name.rsplit(".", 1)[-1] in SCALE_SUFFIXES):
        v = v.float()
        wrong = ~torch.isfinite(v) | (v <= 0)
        if wrong.any():
            bad.append(f"{t.name} = {v[wrong].flatten()[0].item():g}")
    return sorted(bad)


def nan_fp8_codes(path: Path) -> list[str]:
    """FP8 tensors holding a NaN (or infinite) code: vLLM loads them and computes NaN from the
    first token that meets one. Reads the FP8 tensors' bytes (about one byte per parameter of
    the quantized layers: seconds for a 3B model)."""
    import torch

    bad = []
    for t, codes in stored_tensors(path, lambda t: t.dtype in FP8_NAN_BITS):
        mask, value = FP8_NAN_BITS[t.dtype]
        n = int(((codes.view(torch.uint8) & mask) == value).sum())
        if n:
            bad.append(f"{t.name} holds {n} FP8 NaN/inf code{'s' if n > 1 else ''}")
    return sorted(bad)


def nonfinite_parameter(model) -> str | None:
    """The first parameter of a loaded model holding NaN or an infinity, if any."""
    import torch

    fp8 = (torch.float8_e4m3fn, torch.float8_e5m2)  # FP8 codes: their scales are checked
    for name, p in model.named_parameters():
        if p.is_floating_point() and p.dtype not in fp8 and not torch.isfinite(p).all():
            return name
    return None


def check_finite(model, path: Path, flag: str) -> None:
    """A loaded checkpoint's weights are finite numbers, else bad input naming the first."""
    name = nonfinite_parameter(model)
    if name is not None:
        raise BadInput(
            f"{flag} {path}: weight {name} holds NaN or infinite values; the checkpoint is "
            "damaged: restore its weights or rebuild it"
        )
