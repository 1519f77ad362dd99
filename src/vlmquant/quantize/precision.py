"""precision_map.json: every weight-bearing module's precision, the rule that decided it, and
its scales, read from the quantized model before export.

The rule is the last quant-config entry whose pattern matches the module's quantizer name
(ModelOpt applies entries in order, later ones win), or "outside the language model" for the
modules hf_ptq keeps out of quantization, or "no quantizer" for module types ModelOpt leaves
alone (embeddings, convolutions it does not wrap).
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from typing import Any

from vlmquant.checkpoint.names import hub_name

FP8 = "FP8_E4M3"
BF16 = "BF16"


def precision_counts(modules: dict[str, Any]) -> dict[str, int]:
    return dict(Counter(m["precision"] for m in modules.values()))


def deciding_rule(quantizer_name: str, module, quant_cfg: list[dict[str, Any]]) -> str:
    rule = "none matched (ModelOpt default: enabled)"
    for entry in quant_cfg:
        pattern = entry.get("quantizer_name", "")
        parent = entry.get("parent_class")
        if parent and type(module).__name__ not in (
            parent.split(".")[-1],
            f"Quant{parent.split('.')[-1]}",
        ):
            continue
        if fnmatch.fnmatch(quantizer_name, pattern):
            state = "disable" if entry.get("enable") is False else "quantize"
            rule = f"{pattern} ({state})" + (f" [{parent}]" if parent else "")
    return rule


def _scale(quantizer) -> float | None:
    amax = getattr(quantizer, "amax", None)
    if amax is None or not quantizer.is_enabled:
        return None
    return float(amax.float().max()) / float(quantizer.maxbound)


def precision_map(model, quant_cfg: list[dict[str, Any]], outside: list[str]) -> dict[str, Any]:
    import torch

    modules: dict[str, Any] = {}
    kv: dict[str, Any] = {}
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear | torch.nn.Embedding | torch.nn.Conv3d):
            continue
        out_of_lm = any(name == o or name.startswith(o + ".") for o in outside)
        wq = getattr(module, "weight_quantizer", None)
        iq = getattr(module, "input_quantizer", None)
        fp8 = wq is not None and wq.is_enabled
        if out_of_lm:
            rule = "outside the language model (hf_ptq: quantizers disabled)"
        elif wq is None:
            rule = f"no quantizer (ModelOpt does not quantize {type(module).__name__})"
        else:
            rule = deciding_rule(f"{name}.weight_quantizer", module, quant_cfg)
        modules[hub_name(name)] = {
            "precision": FP8 if fp8 else BF16,
            "activations": FP8 if iq is not None and iq.is_enabled else BF16,
            "rule": rule,
            "weight_scale": _scale(wq) if fp8 else None,
            "input_scale": _scale(iq) if iq is not None else None,
        }
    for name, module in model.named_modules():
        for which in ("k", "v"):
            q = getattr(module, f"{which}_bmm_quantizer", None)
            if q is not None and q.is_enabled:
                kv[f"{hub_name(name)}.{which}_proj.{which}_scale"] = _scale(q)
    return {
        "counts": precision_counts(modules),
        "modules": modules,
        "kv_cache_scales": kv,
        "quant_cfg": quant_cfg,
        "kv_cache_bf16_layers": {},  # layer -> what kept its KV cache BF16 (quantize fills it)
    }


def scale_summary(scale) -> float | dict[str, float]:
    """A per-tensor scale as its value; a per-channel one as its channel count, min and max."""
    if scale.numel() == 1:
        return float(scale.float())
    s = scale.float()
    return {"channels": s.numel(), "min": float(s.min()), "max": float(s.max())}


def reconcile_with_export(pmap: dict[str, Any], checkpoint) -> dict[str, Any]:
    """Make the map say what the files hold: stored dtype and the exported (final) scales.

    ModelOpt can calibrate a quantizer and still export the module unquantized (the vision
    patch embedding, a Conv3d, stays BF16); the files are the truth a server loads.
    """
    from safetensors import safe_open

    from vlmquant.checkpoint.headers import tensors

    stored = {t.name: t for t in tensors(checkpoint)}
    scales: dict[str, Any] = {}
    for file in sorted({t.file for t in stored.values() if t.name.endswith("_scale")}):
        with safe_open(str(checkpoint / file), "pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                if name.endswith("_scale"):
                    scales[name] = scale_summary(f.get_tensor(name))
    for name, entry in pmap["modules"].items():
        weight = stored.get(f"{name}.weight")
        if weight is None:  # tied lm_head: stored once as the embedding
            entry["stored"] = "tied to model.embed_tokens"
            continue
        entry["stored"] = weight.dtype
        if entry["precision"] == FP8 and weight.dtype != "F8_E4M3":
            entry["precision"], entry["activations"] = BF16, BF16
            entry["rule"] += "; exported BF16 (ModelOpt's export does not quantize this type)"
        entry["weight_scale_exported"] = scales.get(f"{name}.weight_scale")
        entry["input_scale_exported"] = scales.get(f"{name}.input_scale")
    pmap["kv_cache_scales_exported"] = {
        k: v for k, v in scales.items() if k.endswith(("k_scale", "v_scale"))
    }
    pmap["counts"] = precision_counts(pmap["modules"])
    return pmap
