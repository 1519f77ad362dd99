"""pipeline: runs a recipe's stages, a second run skips them all, a changed calib seed reruns
calib and everything after it and nothing before."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def recipe(tmp_path):
    m = tmp_path / "models" / "tiny_qwen2_5_vl"

    def write(seed: int):
        path = tmp_path / "tiny.toml"
        path.write_text(f"""
[make-tiny]
out = "{m}/checkpoints/tiny"
[calib]
demo = true
num_samples = 64
seed = {seed}
out = "{tmp_path}/datasets/demo_captions.txt"
[quantize]
model = "{m}/checkpoints/tiny"
calib = "{tmp_path}/datasets/demo_captions.txt"
out = "{m}/quantized/fp8_fp8_demo"
calib_size = 32
[eval]
base = "{m}/checkpoints/tiny"
quantized = "{m}/quantized/fp8_fp8_demo"
calib = "{tmp_path}/datasets/demo_captions.txt"
out = "{m}/runs/fp8_fp8_demo/fidelity.json"
vllm = false
max_samples = 6
image_samples = 2
""")
        return path

    return write


def ran(out: str) -> list[str]:
    return [line.split()[-1] for line in out.splitlines() if line.startswith("pipeline: running")]


def test_skip_logic(recipe, tmp_path, capsys, monkeypatch):
    """Keys live beside the outputs, so a run from another folder finds them."""
    from vlmquant.cli import main

    state: list[str] = []
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    assert main(["pipeline", "--recipe", str(recipe(1234)), *state]) == 0
    assert ran(capsys.readouterr().out) == ["make-tiny", "calib", "quantize", "eval", "report"]
    root = tmp_path / "models" / "tiny_qwen2_5_vl"
    report = root / "reports" / "report-fp8_fp8_demo.md"
    assert report.is_file() and list((tmp_path / "a").iterdir()) == []
    marker = json.loads((root / "quantized" / ".fp8_fp8_demo.pipeline.json").read_text())
    assert marker["stage"] == "quantize" and len(marker["key"]) == 64
    monkeypatch.chdir(tmp_path / "b")
    assert main(["pipeline", "--recipe", str(recipe(1234)), *state]) == 0
    out = capsys.readouterr().out
    assert ran(out) == [] and out.count("is current, skipped") == 5
    assert main(["pipeline", "--recipe", str(recipe(99)), *state]) == 0
    assert ran(capsys.readouterr().out) == ["calib", "quantize", "eval", "report"]
    assert main(["pipeline", "--recipe", str(recipe(99)), *state, "--force-stage", "eval"]) == 0
    assert ran(capsys.readouterr().out) == ["eval", "report"]


def test_recipe_is_required(cli):
    code, err = cli("pipeline")
    assert code == 2 and "--recipe" in err


def test_never_replaces_what_it_did_not_make(tiny_model, tmp_path, cli):
    """A recipe whose [make-tiny] out names an existing checkpoint (made by someone else) must
    not overwrite it with random weights."""
    from vlmquant.core.runinfo import sha256_file

    before = sha256_file(tiny_model / "model.safetensors")
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[make-tiny]\nout = "{tiny_model}"\nseed = 7\n')
    code, err = cli("pipeline", "--recipe", recipe, "--state", tmp_path / "state.json")
    assert code == 2 and "which this pipeline did not make" in err and err.count("\n") == 1
    assert sha256_file(tiny_model / "model.safetensors") == before


def test_a_crash_in_report_keeps_the_stages_before_it(recipe, tmp_path, capsys, monkeypatch):
    """A pipeline that quantizes and evaluates, then crashes while rendering the report: the
    export and fidelity stay whole and recorded, no report is half-written, and the next run
    redoes only the report."""
    from vlmquant.cli import main
    from vlmquant.report import report_stage

    def crash(*args, **kwargs):
        raise RuntimeError("injected: the report crashed")

    state = ["--state", str(tmp_path / "state.json")]
    root = tmp_path / "models" / "tiny_qwen2_5_vl"
    monkeypatch.setattr(report_stage, "index_markdown", crash)
    with pytest.raises(RuntimeError, match="injected"):  # unexpected: a traceback, exit 1
        main(["pipeline", "--recipe", str(recipe(1234)), *state])
    capsys.readouterr()
    assert (root / "quantized" / "fp8_fp8_demo" / "run.json").is_file()
    assert (root / "runs" / "fp8_fp8_demo" / "fidelity.json").is_file()
    assert not (root / "reports").exists() and not list(root.glob(".report-staging-*"))
    monkeypatch.undo()
    assert main(["pipeline", "--recipe", str(recipe(1234)), *state]) == 0
    assert ran(capsys.readouterr().out) == ["report"]
    assert (root / "reports" / "report-fp8_fp8_demo.md").is_file()
