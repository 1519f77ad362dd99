"""--qformat fp8_per_channel_per_token: ModelOpt's per-channel weight / per-token activation FP8,
exported, checked against vLLM's loader rules and its activation quantization."""

from __future__ import annotations

import json
import shutil

import torch
from safetensors.torch import load_file, save_file

PCPT = ("--qformat", "fp8_per_channel_per_token")


def test_export_has_a_scale_per_output_row_and_no_input_scale(quantized, tiny_model):
    ckpt = quantized(*PCPT)
    quant = json.loads((ckpt / "hf_quant_config.json").read_text())["quantization"]
    assert quant["quant_algo"] == "FP8_PER_CHANNEL_PER_TOKEN"
    assert quant["kv_cache_quant_algo"] == "FP8"
    from vlmquant.checkpoint.names import hub_name

    state = load_file(ckpt / "model.safetensors")
    ref = {hub_name(k): v for k, v in load_file(tiny_model / "model.safetensors").items()}
    fp8 = [k for k, v in state.items() if v.dtype == torch.float8_e4m3fn]
    assert len(fp8) == 14  # 7 linears x 2 layers of the language model
    for k in fp8:
        scale = state[k.replace(".weight", ".weight_scale")]
        assert scale.shape == (state[k].shape[0],), k
        assert k.replace(".weight", ".input_scale") not in state, k
        # each row dequantizes within E4M3 rounding of its own scale
        deq = state[k].float() * scale.float()[:, None]
        orig = ref[k].float()
        bound = orig.abs() * 2**-4 + scale.float()[:, None] * 2**-10 + 1e-12
        assert torch.all((deq - orig).abs() <= bound), k
    run = json.loads((ckpt / "run.json").read_text())
    assert (
        run["fused_scales"]["applied"] is False and "per-channel" in run["fused_scales"]["reason"]
    )
    pmap = json.loads((ckpt / "precision_map.json").read_text())
    entry = pmap["modules"]["model.layers.0.mlp.down_proj"]
    assert entry["precision"] == "FP8_E4M3" and entry.get("input_scale_exported") is None
    assert entry["weight_scale_exported"]["channels"] == 128


def test_check_vllm_passes_it_and_names_a_per_tensor_scale_in_it(quantized, tmp_path, cli):
    ckpt = quantized(*PCPT)
    assert cli("check-vllm", ckpt)[0] == 0
    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    state = load_file(bad / "model.safetensors")
    state["model.layers.1.mlp.down_proj.weight_scale"] = torch.tensor(0.01)
    save_file(state, bad / "model.safetensors", metadata={"format": "pt"})
    code, err = cli("check-vllm", bad)
    assert code == 2 and err.count("\n") == 1
    assert "scale-shape" in err and "model.layers.1.mlp.down_proj.weight_scale" in err


def test_per_token_activation_quantization_equals_vllms():
    """The emulation's dynamic per-token FP8 against vLLM's own QuantFP8 (its native path, the
    one the CPU build's torch kernels use), on activations with outlier rows and a zero row."""
    from vllm.config import VllmConfig, set_current_vllm_config
    from vllm.model_executor.layers.quantization.input_quant_fp8 import QuantFP8
    from vllm.model_executor.layers.quantization.utils.quant_utils import GroupShape

    from vlmquant.eval.fp8 import fake_fp8, per_token_scale

    g = torch.Generator().manual_seed(0)
    x = (torch.randn(64, 896, generator=g) * torch.logspace(-3, 3, 64)[:, None]).bfloat16()
    x[5] = 0
    with set_current_vllm_config(VllmConfig()):
        quant = QuantFP8(static=False, group_shape=GroupShape.PER_TOKEN)
    q, scale = quant.forward_native(x)
    theirs = q.float() * scale
    ours = fake_fp8(x, per_token_scale(x), reciprocal=True)
    assert torch.equal(per_token_scale(x), scale)
    assert torch.equal(ours, theirs)
