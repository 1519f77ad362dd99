"""FP8 E4M3 numerics as vLLM's kernels compute them: quantize-dequantize in float32, and the
dynamic per-token scales of its activation quantization."""

from __future__ import annotations

import torch

FP8_MAX = 448.0
MIN_TOKEN_SCALE = 1.0 / (FP8_MAX * 512.0)  # vLLM's floor for dynamic per-token scales
KV_ROUNDINGS = ("nearest", "toward-zero")


def fake_fp8(
    x: torch.Tensor, scale: torch.Tensor, rounding: str = "nearest", reciprocal: bool = False
) -> torch.Tensor:
    """FP8 E4M3 quantize-dequantize in float32 with `scale` (one number, or any shape that
    broadcasts against x).

    rounding="nearest" is torch's (and CUDA's) round-to-nearest-even; "toward-zero" keeps the
    E4M3 value of largest magnitude not above |x / scale| (3 mantissa bits; below 2**-6 the
    subnormal step 2**-9). reciprocal: scale x by the float32 1 / scale instead of dividing.
    """
    if rounding not in KV_ROUNDINGS:
        raise ValueError(f"rounding must be one of {KV_ROUNDINGS}, not {rounding!r}")
    scale = scale.float()
    t = x.float() * (1.0 / scale) if reciprocal else x.float() / scale
    t = t.clamp(-FP8_MAX, FP8_MAX)
    if rounding == "toward-zero":
        _, exp = torch.frexp(t.abs().clamp_min(2.0**-6))  # |t| = m * 2**exp, m in [0.5, 1)
        step = torch.ldexp(torch.ones_like(t), exp - 4)  # 2**(floor(log2|t|) - 3)
        return torch.trunc(t / step) * step * scale
    return t.to(torch.float8_e4m3fn).float() * scale


def per_token_scale(x: torch.Tensor) -> torch.Tensor:
    """Dynamic per-token FP8 scales of `x` (one per row, shape [..., 1]), as vLLM computes them."""
    amax = x.abs().amax(dim=-1, keepdim=True).float()
    return (amax / FP8_MAX).clamp(min=MIN_TOKEN_SCALE)
