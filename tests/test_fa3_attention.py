"""The "cuda" emulation's FlashAttention 3 FP8 softmax against a plain online-softmax loop."""

from __future__ import annotations

import types

import torch

from vlmquant.eval import attention_kernels, emulate


def online_fp8_reference(q, k, v, scale: float, block: int) -> torch.Tensor:
    """FA3's FP8 forward written as its loop: key blocks from the last to the first, running
    row maximum m, P = exp2(s * log2e - (m * log2e - 8)) rounded to E4M3, accumulators and row
    sums rescaled when m grows. q [H, T, D], k/v [H, T, D] (heads already repeated)."""
    heads, t, _ = q.shape
    log2e = 1.4426950408889634
    out = torch.zeros_like(q)
    for h in range(heads):
        for i in range(t):
            s = (k[h, : i + 1] @ q[h, i]) * scale * log2e
            m, acc, total = float("-inf"), torch.zeros(q.shape[-1]), 0.0
            for b in reversed(range(0, i + 1, block)):
                sb = s[b : b + block]
                new_m = max(m, float(sb.max()))
                if m != float("-inf"):
                    r = 2.0 ** (m - new_m)
                    acc, total = acc * r, total * r
                m = new_m
                p = torch.exp2(sb - (m - 8.0))
                total += float(p.sum())
                acc = acc + p.to(torch.float8_e4m3fn).float() @ v[h, : i + 1][b : b + block]
            out[h, i] = acc / total
    return out


def test_fa3_fp8_attention_equals_the_online_loop():
    torch.manual_seed(0)
    heads, kv_heads, t, d, block = 4, 2, 40, 16, 16  # three key blocks, GQA 2
    q = torch.randn(1, heads, t, d) * 3
    k, v = torch.randn(1, kv_heads, t, d) * 3, torch.randn(1, kv_heads, t, d)
    module = types.SimpleNamespace(scaling=d**-0.5)
    got = attention_kernels.fa3_fp8_attention(module, q, k, v, None, block)[0].transpose(0, 1)
    rep = (x[0].repeat_interleave(heads // kv_heads, 0) for x in (k, v))
    want = online_fp8_reference(q[0], *rep, d**-0.5, block)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # the FP8 probabilities are not float32 softmax: the check is not vacuous
    exact = torch.nn.functional.scaled_dot_product_attention(
        q, *(x.repeat_interleave(2, 1) for x in (k, v)), is_causal=True
    )[0]
    assert (exact - got).abs().max() > 1e-3
    # a boolean mask gives the same as the causal default
    mask = torch.ones(t, t, dtype=torch.bool).tril()[None, None]
    masked = attention_kernels.fa3_fp8_attention(module, q, k, v, mask, block)[0].transpose(0, 1)
    torch.testing.assert_close(masked, got)


def test_cuda_arithmetic_rounds_probabilities_and_cpu_does_not():
    assert emulate.KERNELS["cuda"].prob_block == attention_kernels.FA3_FP8_BLOCK_N
    assert emulate.KERNELS["cpu"].prob_block is None
    assert emulate.KERNELS["modelopt"].prob_block is None
