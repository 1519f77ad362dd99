"""What a loaded vLLM engine really uses, read back from the engine and its model."""

from __future__ import annotations

from typing import Any


def engine_facts(llm) -> dict[str, Any]:
    """Quantization, KV-cache dtype and size from the engine config; layer methods, kernels and
    bytes from the model inside the worker (one `apply_model` round trip)."""
    facts: dict[str, Any] = {}
    try:
        vcfg = llm.llm_engine.vllm_config
        facts["quantization"] = vcfg.model_config.quantization
        facts["kv_cache_dtype"] = str(vcfg.cache_config.cache_dtype)
        facts["num_gpu_blocks"] = vcfg.cache_config.num_gpu_blocks
        facts["block_size"] = vcfg.cache_config.block_size
    except AttributeError as e:  # engine internals move between vLLM versions
        facts["unavailable"] = str(e)
    try:
        facts.update(llm.apply_model(loaded_model_facts)[0])
    except Exception as e:  # apply_model needs VLLM_ALLOW_INSECURE_SERIALIZATION in V1
        facts["layer_methods_unavailable"] = f"{type(e).__name__}: {e}"[:300]
    return facts


def loaded_model_facts(model) -> dict[str, Any]:
    """Runs inside vLLM's worker: what the loaded model is made of."""
    facts = {
        "layer_methods": linear_methods(model),
        "kernels": kernel_choices(model),
        "weight_bytes": weight_bytes(model),
        "attention_kv_cache_dtypes": attention_kv_dtypes(model),
    }
    packed = packed_linears(model)
    if packed:
        facts["weight_bytes_excludes"] = (
            f"{packed} linears whose weights the CPU build repacked for oneDNN / its GEMM "
            "kernels and removed from the module (held by the kernel, not as parameters)"
        )
    return facts


def attention_kv_dtypes(model) -> dict[str, int]:
    """Runs inside vLLM's worker: attention layers by the KV-cache dtype each stores ("auto":
    the model's dtype, as --kv-cache-dtype-skip-layers leaves the layers it names)."""
    counts: dict[str, int] = {}
    for module in model.modules():
        dtype = getattr(module, "kv_cache_dtype", None)
        if isinstance(dtype, str) and getattr(module, "impl", None) is not None:
            counts[dtype] = counts.get(dtype, 0) + 1
    return dict(sorted(counts.items()))


def weight_bytes(model) -> int:
    """Runs inside vLLM's worker: bytes of every parameter and buffer as loaded."""
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def packed_linears(model) -> int:
    """Runs inside vLLM's worker: linears the CPU build's unquantized GEMM dispatch repacked
    (`cpu_linear` set, `weight` left empty), whose bytes `weight_bytes` cannot see."""
    return sum(
        1
        for m in model.modules()
        if hasattr(m, "cpu_linear")
        and getattr(m, "weight", None) is not None
        and m.weight.numel() == 0
    )


def linear_methods(model) -> dict[str, int]:
    """Runs inside vLLM's worker: count layers by (top-level part, quantization method)."""
    counts: dict[str, int] = {}
    for name, module in model.named_modules():
        method = getattr(module, "quant_method", None)
        if method is not None:
            key = f"{name.split('.')[0]}: {type(method).__name__}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def kernel_choices(model) -> dict[str, int]:
    """Runs inside vLLM's worker: count the kernels vLLM picked, by (top-level part, class):
    a quantized linear's GEMM kernel object (an attribute of its quant method whose class
    name ends in Kernel) and each attention layer's backend implementation (`impl`)."""
    counts: dict[str, int] = {}
    for name, module in model.named_modules():
        method = getattr(module, "quant_method", None)
        picked = [
            v
            for v in getattr(method, "__dict__", {}).values()
            if type(v).__name__.endswith("Kernel")
        ]
        impl = getattr(module, "impl", None)
        if impl is not None and type(impl).__name__.endswith("Impl"):
            picked.append(impl)
        for obj in picked:
            key = f"{name.split('.')[0]}: {type(obj).__name__}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))
