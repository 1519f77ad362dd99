"""check-vllm: our exports pass; a stray vision k_scale or unshared fused scales fail, named."""

from __future__ import annotations

import shutil

import torch
from safetensors.torch import load_file, save_file


def test_our_exports_and_the_base_pass(quantized, tiny_model, cli):
    for ckpt in (quantized(), quantized("--scope", "full"), tiny_model):
        code, err = cli("check-vllm", ckpt)
        assert code == 0, err


def test_stray_vision_kv_scale_fails_naming_the_tensor(quantized, tmp_path, cli, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(quantized("--scope", "full"), bad)
    state = load_file(bad / "model.safetensors")
    state["visual.blocks.0.attn.k_proj.k_scale"] = torch.tensor(0.01)
    save_file(state, bad / "model.safetensors", metadata={"format": "pt"})
    code, err = cli("check-vllm", bad)
    assert code == 2 and err.count("\n") == 1
    assert "visual.blocks.0.attn.k_proj.k_scale" in err and "--scope full" in err


def test_unshared_fused_scales_fail_on_the_cpu_build(quantized, cli):
    code, err = cli("check-vllm", quantized("--no-unify-fused-scales"))
    assert code == 2 and "fused-scales" in err and "weight_scale" in err


def test_json_verdict(quantized, capsys):
    import json

    from vlmquant.cli import main

    assert main(["check-vllm", "--json", str(quantized())]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["ok"] and verdict["vllm_build"] == "cpu" and verdict["findings"] == []


def test_fallback_when_vllm_needs_an_engine_config(quantized, monkeypatch, cli):
    """The GPU build's FP8 method reads the engine's model dtype at construction; without an
    engine the check falls back to the config's exclusion rules and the refused module names
    parsed from get_quant_method. Verdicts must not change."""
    from vllm.model_executor.layers.quantization.modelopt import ModelOptFp8Config

    def needs_engine(self, layer, prefix):
        raise AssertionError("Current vLLM config is not set.")

    monkeypatch.setattr(ModelOptFp8Config, "get_quant_method", needs_engine)
    for ckpt in (quantized(), quantized("--scope", "full")):
        assert cli("check-vllm", ckpt)[0] == 0
