"""quantize: export layout, FP8 accuracy of the stored weights, determinism."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from vlmquant.core.runinfo import sha256_file
from vlmquant.quantize import qconfig

LM_LINEARS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)


def test_full_scope_config_differs_only_in_vision_entries():
    lm, full = (qconfig.build_quant_cfg("fp8", "fp8", s)["quant_cfg"] for s in ("lm", "full"))
    assert [e for e in lm if e["quantizer_name"] not in qconfig.VISION_DISABLE] == full[:-1]
    assert full[-1] == {"quantizer_name": "*visual*[kv]_bmm_quantizer", "enable": False}


def test_lm_export_layout(quantized):
    ckpt = quantized()
    state = load_file(ckpt / "model.safetensors")
    quant = json.loads((ckpt / "hf_quant_config.json").read_text())["quantization"]
    assert quant == {
        "quant_algo": "FP8",
        "kv_cache_quant_algo": "FP8",
        "exclude_modules": ["lm_head", "model.embed_tokens", "visual*"],
    }
    layers = {int(k.split(".")[2]) for k in state if k.startswith("model.layers.")}
    for i in layers:
        for lin in LM_LINEARS:
            p = f"model.layers.{i}.{lin}"
            assert state[f"{p}.weight"].dtype == torch.float8_e4m3fn, p
            assert state[f"{p}.weight_scale"].shape == () == state[f"{p}.input_scale"].shape
        assert f"model.layers.{i}.self_attn.k_proj.k_scale" in state
        assert f"model.layers.{i}.self_attn.v_proj.v_scale" in state
    for k, v in state.items():
        if k.startswith(("visual.", "model.embed_tokens", "lm_head")) or "norm" in k:
            assert v.dtype == torch.bfloat16, k
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["quantization_config"]["quant_method"] == "modelopt"
    for f in ("precision_map.json", "run.json"):
        assert (ckpt / f).is_file(), f


def test_export_carries_the_source_processor_untouched(tiny_model, quantized):
    """Calibration tokenizes with truncation and left padding; none of that may reach the
    export, whose prompts would otherwise be cut at --calib-seq tokens."""
    from transformers import AutoProcessor

    ckpt = quantized()
    calib_seq = json.loads((ckpt / "run.json").read_text())["calibration"]["max_seq"]
    long_text = " ".join(["word"] * (calib_seq + 100))
    ids = AutoProcessor.from_pretrained(ckpt)(text=long_text)["input_ids"][0]
    assert len(ids) > calib_seq + 50
    for f in ("tokenizer.json", "tokenizer_config.json", "processor_config.json"):
        assert (ckpt / f).read_bytes() == (tiny_model / f).read_bytes(), f


@pytest.mark.parametrize("kv", ["fp8_cast", "none"])
def test_kv_scales_absent_without_calibrated_kv(quantized, kv):
    state = load_file(quantized("--kv-cache-qformat", kv) / "model.safetensors")
    assert not [k for k in state if k.endswith(("k_scale", "v_scale"))]
    assert sum(v.dtype == torch.float8_e4m3fn for v in state.values()) == 14


def test_full_scope_quantizes_vision_without_vision_kv_scales(quantized):
    ckpt = quantized("--scope", "full")
    state = load_file(ckpt / "model.safetensors")
    assert not [k for k in state if k.startswith("visual.") and k.endswith(("k_scale", "v_scale"))]
    for name in (
        "visual.blocks.0.attn.qkv",
        "visual.blocks.0.attn.proj",
        "visual.blocks.1.mlp.gate_proj",
        "visual.merger.mlp.0",
        "visual.merger.mlp.2",
    ):
        assert state[f"{name}.weight"].dtype == torch.float8_e4m3fn, name
    assert state["visual.patch_embed.proj.weight"].dtype == torch.bfloat16
    quant = json.loads((ckpt / "hf_quant_config.json").read_text())["quantization"]
    assert quant["exclude_modules"] == ["lm_head", "model.embed_tokens"]
    pmap = json.loads((ckpt / "precision_map.json").read_text())
    assert pmap["modules"]["visual.patch_embed.proj"]["precision"] == "BF16"


def _dequant_error_ok(ckpt, base, slack):
    state, ref = load_file(ckpt / "model.safetensors"), load_file(base / "model.safetensors")
    checked = 0
    for k, w in state.items():
        if w.dtype != torch.float8_e4m3fn:
            continue
        scale = state[k.replace(".weight", ".weight_scale")].float()
        deq, orig = w.float() * scale, ref[k].float()
        # E4M3 keeps 3 mantissa bits: rounding is within 2^-4 relative for normal values and
        # half the smallest subnormal step (2^-10 x scale) near zero; each extra rounding
        # (requantization to the shared scale) can add as much again.
        bound = slack * (orig.abs() * 2**-4 + scale * 2**-10) + 1e-12
        assert torch.all((deq - orig).abs() <= bound), k
        checked += 1
    return checked


def test_dequantized_weights_within_fp8_rounding(quantized, tiny_model):
    assert _dequant_error_ok(quantized("--no-unify-fused-scales"), tiny_model, slack=1) == 14
    assert _dequant_error_ok(quantized(), tiny_model, slack=2) == 14
    assert _dequant_error_ok(quantized("--scope", "full"), tiny_model, slack=2) == 26


def test_unified_scales_equal_vllm_gpu_requantization(quantized, monkeypatch):
    """Run vLLM's own requantize_with_max_scale (the GPU build's load step) on the raw export
    and compare with our offline result. Its CUDA kernel is replaced by the kernel's
    arithmetic (x * (1/scale), saturate to +-448, cast), since this CPU build lacks it."""
    from vllm.model_executor.layers.quantization.utils import w8a8_utils

    def scaled_fp8_quant(x, scale):
        q = (x.float() * (1.0 / scale.float())).clamp(-448, 448).to(torch.float8_e4m3fn)
        return q, scale

    monkeypatch.setattr(w8a8_utils.ops, "scaled_fp8_quant", scaled_fp8_quant)
    raw = load_file(quantized("--no-unify-fused-scales") / "model.safetensors")
    ours = load_file(quantized() / "model.safetensors")
    requantized = 0
    for layer in (0, 1):
        for parts in (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj")):
            sub = "self_attn" if parts[0] == "q_proj" else "mlp"
            names = [f"model.layers.{layer}.{sub}.{p}" for p in parts]
            fused = torch.cat([raw[f"{n}.weight"] for n in names])
            scales = torch.stack([raw[f"{n}.weight_scale"] for n in names])
            widths = [raw[f"{n}.weight"].shape[0] for n in names]
            max_scale, weight = w8a8_utils.requantize_with_max_scale(fused, scales, widths)
            assert torch.equal(
                weight.view(torch.uint8),
                torch.cat([ours[f"{n}.weight"] for n in names]).view(torch.uint8),
            )
            assert all(torch.equal(ours[f"{n}.weight_scale"], max_scale) for n in names)
            requantized += int(not torch.all(scales == scales[0]))
    assert requantized > 0  # the shards really had different scales


def test_same_seed_identical_safetensors(tiny_model, demo_calib, tmp_path, cli):
    shas = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert (
            cli(
                "quantize",
                "--model",
                tiny_model,
                "--calib",
                demo_calib,
                "--calib-size",
                32,
                "--out",
                out,
            )[0]
            == 0
        )
        shas.append(sha256_file(out / "model.safetensors"))
    assert shas[0] == shas[1]


def test_run_json_records_settings_and_steps(quantized):
    run = json.loads((quantized() / "run.json").read_text())
    assert run["config"]["kv_cache_qformat"] == "fp8" and run["config"]["scope"] == "lm"
    assert set(run["timings_s"]) >= {
        "load",
        "quantize_and_calibrate",
        "export",
        "unify_fused_scales",
        "total",
    }
    assert len(run["inputs"]["calib"]["sha256"]) == 64
    # where the weights sat while calibrating (no GPU here: all on the CPU)
    placement = run["placement"]
    assert placement["device_map"] == "cpu" and list(placement["parameter_bytes_by_device"]) == [
        "cpu"
    ]
    assert placement["parameter_bytes_by_device"]["cpu"] > 0
    assert run["versions"]["nvidia-modelopt"] == "0.47.0"
    assert run["fused_scales"]["applied"] and run["size"]["by_dtype"]["F8_E4M3"]["tensors"] == 14
    assert run["calibration"] == {
        "mode": "text",
        "samples": 64,
        "batch_size": 16,
        "batches": 4,
        "max_seq": 512,
        "padding": "hf_ptq",
        "algorithm": "max",
    }


def test_unpadded_calibration_is_opt_in_and_changes_only_scales(quantized, cli):
    """--calib-padding none: each caption alone, so no pad position enters any max; the
    default stays hf_ptq's padded batches. Same tensors, some scales differ, vLLM-loadable."""
    padded, alone = quantized(), quantized("--calib-padding", "none")
    a, b = load_file(padded / "model.safetensors"), load_file(alone / "model.safetensors")
    assert a.keys() == b.keys()
    scales = [k for k in a if k.endswith(("input_scale", "k_scale", "v_scale"))]
    assert any(not torch.equal(a[k], b[k]) for k in scales)
    run = json.loads((alone / "run.json").read_text())
    assert run["calibration"]["padding"] == "none" and run["calibration"]["batch_size"] == 1
    assert json.loads((padded / "run.json").read_text())["calibration"]["padding"] == "hf_ptq"
    assert cli("check-vllm", alone)[0] == 0
