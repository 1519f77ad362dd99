"""FP8 emulation from the exported artifact: what vLLM's FP8 kernels compute, in torch.

Given a ModelOpt FP8 export, build a transformers model whose quantized linears compute
    y = Q(x / s_in) * s_in  @  (W_fp8 * s_w)^T + b        (in float32)
with Q = saturate to +-448 and round to E4M3, W_fp8 and the scales read from the safetensors;
and, when the export has k_scale / v_scale, keys (after RoPE) and values pass through the same
Q with those scales before attention, as an FP8 KV cache stores them. BF16 modules (vision
tower in LM-only exports, embeddings, lm_head, norms) are the artifact's own BF16 tensors.
Runs on CPU or GPU; gives full logits, so every metric comes from the artifact itself.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vlmquant.quantize.precision import hub_name

FP8_MAX = 448.0
KV_ATTENTION = "vlmquant_fp8kv"


def fake_fp8(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Static per-tensor FP8 E4M3 quantize-dequantize in float32."""
    q = (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return q.float() * scale


class FP8Linear(nn.Module):
    """A linear layer as the FP8 kernel runs it: FP8 input and weight, float32 accumulate."""

    def __init__(
        self,
        weight_fp8: torch.Tensor,
        weight_scale: torch.Tensor,
        input_scale: torch.Tensor,
        bias: torch.Tensor | None,
    ):
        super().__init__()
        self.register_buffer("weight", weight_fp8.float() * weight_scale.float())
        self.register_buffer("input_scale", input_scale.float())
        self.register_buffer("bias", None if bias is None else bias.float())
        self.in_features, self.out_features = weight_fp8.shape[1], weight_fp8.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.linear(fake_fp8(x, self.input_scale), self.weight, self.bias)
        return y.to(x.dtype)


def _fp8_kv_attention(module, query, key, value, attention_mask, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    scales = getattr(module, "_vlmquant_kv_scales", None)
    if scales is not None:
        key = fake_fp8(key, scales[0]).to(key.dtype)
        value = fake_fp8(value, scales[1]).to(value.dtype)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def _register_attention() -> None:
    """Our attention is SDPA with FP8 K/V: it needs SDPA's masks too (an unknown name gets none)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(KV_ATTENTION, _fp8_kv_attention)
    AttentionMaskInterface.register(KV_ATTENTION, sdpa_mask)


def load_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for f in sorted(checkpoint.glob("*.safetensors")):
        state.update({hub_name(k): v for k, v in load_file(f).items()})
    return state


def load_emulated(
    checkpoint: Path, device: str = "cpu", dtype: torch.dtype = torch.bfloat16
) -> tuple[nn.Module, dict[str, str]]:
    """The checkpoint as a transformers model computing what vLLM computes.

    Returns (model, {module name: "FP8" | "BF16"}). An unquantized checkpoint loads as is.
    `dtype=torch.float32` runs the non-FP8 parts in float32 (used to compare against ModelOpt's
    fake quantization without BF16 rounding noise).
    """
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(
        checkpoint, dtype=dtype, device_map=device
    ).eval()
    precision = {}
    if not (checkpoint / "hf_quant_config.json").is_file():
        return model, precision
    state = load_state(checkpoint)
    for name, module in list(model.named_modules()):
        key = hub_name(name)
        if not isinstance(module, nn.Linear):
            continue
        w = state.get(f"{key}.weight")
        if w is None or w.dtype != torch.float8_e4m3fn:
            precision[key] = "BF16"
            continue
        parent, _, leaf = name.rpartition(".")
        fp8 = FP8Linear(
            w, state[f"{key}.weight_scale"], state[f"{key}.input_scale"], state.get(f"{key}.bias")
        ).to(device)
        setattr(model.get_submodule(parent), leaf, fp8)
        precision[key] = "FP8"
    _attach_kv_scales(model, state, device)
    return model, precision


def _attach_kv_scales(model: nn.Module, state: dict[str, torch.Tensor], device: str) -> None:
    found = False
    for name, module in model.named_modules():
        key = hub_name(name)
        k, v = state.get(f"{key}.k_proj.k_scale"), state.get(f"{key}.v_proj.v_scale")
        if k is not None and v is not None:
            module._vlmquant_kv_scales = (k.float().to(device), v.float().to(device))
            found = True
    if found:
        _register_attention()
        text_config = model.config.get_text_config()
        text_config._attn_implementation = KV_ATTENTION
