"""infer: bad input exits 2 with one line and leaves nothing at --out-dir."""

from __future__ import annotations

import importlib.util
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file


@pytest.fixture
def base_args(quantized, tmp_path):
    return ["infer", "--model", quantized(), "--out-dir", tmp_path / "out"]


def test_bad_inputs(base_args, tiny_model, tmp_path, cli):
    bad_prompts = tmp_path / "p.jsonl"
    bad_prompts.write_text('{"text": "fine"}\n{"text": "broken"\n')
    no_image = tmp_path / "img.jsonl"
    no_image.write_text('{"text": "look", "image": "/nonexistent/cat.png"}\n')
    cases = [
        (["--model", tmp_path / "missing"], "missing: no such folder"),
        (["--model", tiny_model, "--expect-fp8"], "not a ModelOpt FP8 export"),
        (["--prompts", bad_prompts], "line 2: not JSON"),
        (["--prompts", no_image], "neither a drawable name"),
        (["--prompts", tmp_path / "none.jsonl"], "no such file"),
    ]
    for extra, expect in cases:
        code, err = cli(*base_args, *extra)
        assert code == 2 and expect in err and err.count("\n") == 1, (extra, err)
        assert not (tmp_path / "out").exists()


def test_vllm_missing_is_named(base_args, tmp_path, cli, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a)
    )
    code, err = cli(*base_args)
    assert code == 2 and "scripts/setup.sh" in err


def test_checkpoint_failing_check_vllm_stops_before_any_engine(quantized, tmp_path, cli):
    bad = tmp_path / "bad"
    shutil.copytree(quantized("--scope", "full"), bad)
    state = load_file(bad / "model.safetensors")
    state["visual.blocks.1.attn.v_proj.v_scale"] = torch.tensor(0.02)
    save_file(state, bad / "model.safetensors", metadata={"format": "pt"})
    code, err = cli("infer", "--model", bad, "--out-dir", tmp_path / "out")
    assert code == 2 and "visual.blocks.1.attn.v_proj.v_scale" in err
    assert not (tmp_path / "out").exists()
