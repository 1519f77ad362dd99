"""A checkpoint's quantization as vLLM reads it: ModelOpt's hf_quant_config.json or, without it,
config.json's quantization_config; and whether its heads shard over a tensor-parallel size."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def quant_info(model_dir: Path) -> dict[str, Any] | None:
    """A ModelOpt export's `quant_algo`, `kv_cache_quant_algo` and `exclude_modules`, from
    hf_quant_config.json or, without it, config.json's quantization_config (vLLM reads
    either; the checkpoint contract checks that both say the same); None for an unquantized
    checkpoint."""
    import json

    f = model_dir / "hf_quant_config.json"
    if f.is_file():
        return json.loads(f.read_text()).get("quantization", {})
    cfg = model_dir / "config.json"
    qc = json.loads(cfg.read_text()).get("quantization_config") if cfg.is_file() else None
    return config_quant_info(qc)


def config_quant_info(qc: dict[str, Any] | None) -> dict[str, Any] | None:
    """config.json's ModelOpt `quantization_config` in hf_quant_config.json's terms."""
    if not qc or qc.get("quant_method") != "modelopt":
        return None
    kv = qc.get("kv_cache_scheme") or {}
    return {
        "quant_algo": qc.get("quant_algo"),
        "kv_cache_quant_algo": "FP8"
        if kv.get("type") == "float" and kv.get("num_bits") == 8
        else None,
        "exclude_modules": qc.get("ignore", []),
    }


def is_quantized(model_dir: Path) -> bool:
    return quant_info(model_dir) is not None


def tensor_parallel_problems(config: dict[str, Any], tp: int) -> list[str]:
    """What stops vLLM from sharding this Qwen2.5-VL config over `tp` GPUs: attention heads
    (text and vision) split evenly, and KV heads either split evenly or replicated (tp a
    multiple of them), as vLLM's QKV-parallel linear requires."""
    text = config.get("text_config", config)
    vision = config.get("vision_config", {})
    heads, kv = text.get("num_attention_heads"), text.get("num_key_value_heads")
    problems = []
    if heads and heads % tp:
        problems.append(f"{heads} attention heads are not divisible by tensor parallel size {tp}")
    if kv and kv % tp and tp % kv:
        problems.append(f"{kv} KV heads neither divide by tensor parallel size {tp} nor divide it")
    if vision.get("num_heads") and vision["num_heads"] % tp:
        problems.append(
            f"{vision['num_heads']} vision attention heads are not divisible by tensor "
            f"parallel size {tp}"
        )
    return problems


def kv_bf16_layers(model_dir: Path) -> list[int]:
    """Decoder layers whose KV cache stays BF16 beside an FP8 one (`quantize
    --kv-cache-bf16-layers`, or a `--kld-budget` choice), from the export's precision_map.json;
    vLLM takes them as `--kv-cache-dtype-skip-layers`. Empty for any other checkpoint."""
    import json

    f = model_dir / "precision_map.json"
    if not f.is_file():
        return []
    return sorted(int(i) for i in json.loads(f.read_text()).get("kv_cache_bf16_layers", {}))
