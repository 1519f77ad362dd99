"""quantize: every bad input exits 2 with one line and writes nothing; a killed run leaves no
output and the next run works."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest


@pytest.fixture
def args(tiny_model, demo_calib, tmp_path):
    return {
        "--model": tiny_model,
        "--calib": demo_calib,
        "--calib-size": 16,
        "--out": tmp_path / "out",
    }


def flat(d):
    return [str(x) for kv in d.items() for x in kv if x is not None]


def test_bad_inputs(args, tmp_path, cli, tiny_model, demo_calib):
    not_hf = tmp_path / "not_hf"
    not_hf.mkdir()
    no_manifest = tmp_path / "no_manifest.txt"  # a set whose manifest names no images folder
    no_manifest.write_text(demo_calib.read_text())
    shutil.copy(demo_calib.with_suffix(".jsonl"), no_manifest.with_suffix(".jsonl"))
    other_arch = tmp_path / "llama"
    other_arch.mkdir()
    (other_arch / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    existing = tmp_path / "exists"
    existing.mkdir()
    cases = [
        ({"--model": tmp_path / "missing"}, "no such folder"),
        ({"--model": not_hf}, "no config.json"),
        ({"--model": other_arch}, "LlamaForCausalLM is not supported"),
        ({"--calib": tmp_path / "missing.txt"}, "no such file"),
        ({"--calib": empty}, "no captions"),
        ({"--calib-size": 4096}, "holds 64 captions, --calib-size 4096 asked"),
        ({"--out": existing}, "--force"),
        ({"--calib-mode": "image-text", "--calib": no_manifest}, "needs --images"),
        ({"--calib-mode": "image-text", "--images": tmp_path}, "calibration images missing"),
        ({"--scope": "full", "--calib-mode": "text"}, "needs image activations"),
    ]
    for change, expect in cases:
        code, err = cli("quantize", *flat({**args, **change}))
        assert code == 2, (change, err)
        assert expect in err and err.count("\n") == 1, (change, err)
        assert not (tmp_path / "out").exists()
    code, err = cli("quantize", *flat(args), "--qformat", "int4")
    assert code == 2 and "invalid choice" in err


def test_nothing_of_the_inputs_is_destroyed(args, tmp_path, cli, tiny_model, quantized, capsys):
    """--out on, inside or around --model is refused even with --force; so is an export as
    --model (its scales would be dropped on load and its FP8 codes re-quantized)."""
    from vlmquant.core.runinfo import sha256_file

    export = quantized()
    capsys.readouterr()  # the fixture's own build output
    before = sha256_file(tiny_model / "model.safetensors")
    for out in (tiny_model, tiny_model / "fp8", tiny_model.parent):
        code, err = cli("quantize", *flat({**args, "--out": out}), "--force")
        assert code == 2 and "write the output somewhere else" in err, (out, err)
    code, err = cli("quantize", *flat({**args, "--model": export}))
    assert code == 2 and "a quantized export" in err and err.count("\n") == 1
    assert sha256_file(tiny_model / "model.safetensors") == before
    assert not (tiny_model / "fp8").exists() and not args["--out"].exists()


def test_bad_qformat_in_recipe(args, tmp_path, cli):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[quantize]\nqformat = "nvfp4"\n')
    code, err = cli("quantize", "--recipe", recipe, *flat(args))
    assert code == 2 and "[quantize] qformat = 'nvfp4': not one of fp8" in err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-GPU message")
def test_device_cuda_without_gpu(args, cli):
    code, err = cli("quantize", *flat(args), "--device", "cuda")
    assert code == 2 and "no CUDA GPU" in err


def test_sigkill_mid_run_leaves_nothing_and_rerun_works(args, tmp_path, cli):
    out = args["--out"]
    cmd = [
        sys.executable,
        "-m",
        "vlmquant",
        "quantize",
        *flat({**args, "--calib-size": 64, "--batch-size": 1}),
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".out.tmp-*")):
        time.sleep(0.02)
    assert list(tmp_path.glob(".out.tmp-*")), "the run never started writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    assert cli("quantize", *flat(args))[0] == 0
    assert (out / "model.safetensors").is_file() and (out / "run.json").is_file()
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_library_output_goes_to_the_log_unless_verbose(tiny_model, demo_calib, tmp_path, capsys):
    """ModelOpt's prints (quant_cfg dump, "Inserted N quantizers"), progress bars and warnings
    land in OUT.quantize.log beside the checkpoint; -v shows them on the terminal."""
    from vlmquant.cli import main

    base = ["quantize", "--model", str(tiny_model), "--calib", str(demo_calib)]
    base += ["--calib-size", "16"]
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "quiet")]) == 0
    quiet = capsys.readouterr()
    log = (tmp_path / "quiet.quantize.log").read_text()
    assert "Inserted" in log and "quant_cfg" in log
    assert "Inserted" not in quiet.out + quiet.err and "quant_cfg" not in quiet.out + quiet.err
    assert quiet.out.strip().splitlines()[-1].startswith("quantize: FP8")
    assert not (tmp_path / "quiet" / "quiet.quantize.log").exists()  # not in the checkpoint
    try:
        assert main([*base, "--out", str(tmp_path / "loud"), "-v"]) == 0
    finally:
        import os

        os.environ.pop("VLMQUANT_VERBOSE", None)
    loud = capsys.readouterr()
    assert "Inserted" in loud.out + loud.err and not (tmp_path / "loud.quantize.log").exists()
