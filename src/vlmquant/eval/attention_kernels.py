"""Attention as vLLM's FP8-KV kernels compute it, from K/V already rounded the way the cache
stores them (float32 in, float32 out; the callers round to the model dtype):

- `fa3_fp8_attention`: FlashAttention 3's FP8 forward (Hopper; vLLM's default with a static
  per-tensor FP8 KV cache): FP8 query, K and V, softmax probabilities rounded to FP8;
- `per_token_head_attention`: vLLM's Triton attention with `kv_cache_dtype="fp8_per_token_head"`:
  one float32 scale per token and KV head, computed as the cache is written (max |x| / 448,
  at least 1e-6), the query and the probabilities in BF16 (vLLM 0.25
  `triton_reshape_and_cache_flash.py`, `triton_unified_attention.py`).
"""

from __future__ import annotations

import torch
from torch import nn

from vlmquant.eval.fp8 import FP8_MAX

# FlashAttention 3's FP8 forward on Hopper: key blocks of 160 for head dims up to 64 and, with
# vLLM's paged cache (16-token pages, so no TMA paging), for 128 too (hopper/tile_size.h)
FA3_FP8_BLOCK_N = 160
FA3_FP8_PROB_OFFSET = 8.0  # P = exp2(s * log2(e) - (max * log2(e) - 8)): values up to 2**8
PER_TOKEN_HEAD_MIN_SCALE = 1e-6  # the cache-write kernel's floor for a (token, head) scale


def _keep(attention_mask: torch.Tensor | None, q_len: int, k_len: int, device) -> torch.Tensor:
    """Which (query, key) pairs attend: the mask's, or causal with the queries being the last
    q_len positions."""
    if attention_mask is None:
        return torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(k_len - q_len)
    if attention_mask.dtype == torch.bool:
        return attention_mask[..., :k_len]
    return attention_mask[..., :k_len] > torch.finfo(attention_mask.dtype).min / 2


def fa3_fp8_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    block: int,
) -> torch.Tensor:
    """Attention as FlashAttention 3's FP8 kernel computes it, from already FP8-rounded (and
    dequantized) q/k/v in float32: scores in float32; per key block, visited from the last block
    to the first, P = exp2((s - m) * log2(e) + 8) rounded to FP8 E4M3 with m the maximum over
    that block and every later one (the running maximum when the block is reached); the row sum
    and the output in float32 from P's unrounded and rounded values. query [B, H, T, D],
    key/value [B, H_kv, S, D]; returns [B, T, H, D] as transformers' attention functions do."""
    groups = query.shape[1] // key.shape[1]
    key = key.repeat_interleave(groups, dim=1)
    value = value.repeat_interleave(groups, dim=1)
    t2 = (query @ key.transpose(-1, -2)) * (module.scaling * 1.4426950408889634)  # log2(e)
    q_len, k_len = t2.shape[-2], t2.shape[-1]
    t2 = t2.masked_fill(~_keep(attention_mask, q_len, k_len, t2.device), float("-inf"))
    n_blocks = -(-k_len // block)
    pad = n_blocks * block - k_len
    padded = nn.functional.pad(t2, (0, pad), value=float("-inf"))
    block_max = padded.unflatten(-1, (n_blocks, block)).amax(dim=-1)
    # the running maximum when block b is reached: the maximum over blocks b .. last (so at
    # block 0, the row's final maximum)
    running = block_max.flip(-1).cummax(dim=-1).values.flip(-1)
    final = running[..., :1]
    final = torch.where(final.isfinite(), final, 0.0)
    running = running.repeat_interleave(block, dim=-1)[..., :k_len]
    shift = torch.where(running.isfinite(), running - FA3_FP8_PROB_OFFSET, 0.0)
    p = torch.exp2(t2 - shift)
    rescale = torch.exp2(shift - (final - FA3_FP8_PROB_OFFSET))  # to the final maximum
    row_sum = (p * rescale).sum(dim=-1, keepdim=True)
    p8 = p.to(torch.float8_e4m3fn).float() * rescale
    out = (p8 @ value) / row_sum.clamp_min(torch.finfo(torch.float32).tiny)
    return out.transpose(1, 2).contiguous()


def per_token_head_scales(x: torch.Tensor) -> torch.Tensor:
    """One scale per (token, KV head) of x [B, H_kv, S, D] as vLLM's cache-write kernel takes
    it: max |x| over the head's D values / 448 in float32, at least 1e-6; shape [B, H_kv, S, 1]."""
    amax = x.float().abs().amax(dim=-1, keepdim=True)
    return (amax / FP8_MAX).clamp_min(PER_TOKEN_HEAD_MIN_SCALE)


def per_token_head_codes(x: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """The FP8 values the cache holds: x * (1 / scale) (float32), clamped, rounded to nearest."""
    return (x.float() * (1.0 / scales)).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn).float()


def per_token_head_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
) -> torch.Tensor:
    """vLLM's Triton attention over an `fp8_per_token_head` KV cache. query [B, H, T, D] and
    key/value [B, H_kv, S, D] hold the layer's BF16 values (the key after RoPE); the cache keeps
    each (token, head) row as FP8 codes and a float32 scale. The kernel casts the codes to BF16
    (exact), takes scores in float32 as (q . k_codes) * softmax_scale * k_scale, and multiplies
    the probabilities by v_scale before rounding them to BF16 for the product with the value
    codes; the output is that float32 sum over the float32 row sum. Returns [B, T, H, D]."""
    groups = query.shape[1] // key.shape[1]
    k_scale, v_scale = per_token_head_scales(key), per_token_head_scales(value)
    k_codes = per_token_head_codes(key, k_scale).repeat_interleave(groups, dim=1)
    v_codes = per_token_head_codes(value, v_scale).repeat_interleave(groups, dim=1)
    k_scale = k_scale.repeat_interleave(groups, dim=1).transpose(-1, -2)  # [B, H, 1, S]
    v_scale = v_scale.repeat_interleave(groups, dim=1).transpose(-1, -2)
    s = (query.float() @ k_codes.transpose(-1, -2)) * (module.scaling * k_scale)
    q_len, k_len = s.shape[-2], s.shape[-1]
    s = s.masked_fill(~_keep(attention_mask, q_len, k_len, s.device), float("-inf"))
    m = s.amax(dim=-1, keepdim=True)
    p = torch.exp(s - torch.where(m.isfinite(), m, 0.0))
    row_sum = p.sum(dim=-1, keepdim=True)
    p_v = (p * v_scale).to(torch.bfloat16).float()
    out = (p_v @ v_codes) / row_sum.clamp_min(torch.finfo(torch.float32).tiny)
    return out.transpose(1, 2).contiguous()
