"""The quantization config and model preparation, built as ModelOpt's hf_ptq.py builds them.

hf_ptq.py --qformat fp8 --kv_cache_qformat fp8 on a VLM does, through ModelOpt's API:
  1. find the language model (`get_language_model_from_vl`) and put disabled quantizers on
     every other child of its ancestors (vision tower, lm_head), so export leaves them BF16;
  2. quant_cfg = the `fp8` preset with the KV preset's entries appended
     (`update_quant_cfg_with_kv_cache_quant`); `fp8_cast`'s KV entry has `use_constant_amax`
     (no KV calibration); `none` skips the KV entry;
  3. `mtq.quantize(language_model, quant_cfg, forward_loop)` with max calibration.
`scope="full"` (vision FP8) instead quantizes the whole model with the vision disable entries
removed, and ends with an entry that disables KV quantizers under the vision tower: its
attention has a fused qkv and no k/v projections for vLLM to hang k_scale/v_scale on.
"""

from __future__ import annotations

import copy
from typing import Any

# fp8: static per-tensor weight and activation scales (hf_ptq's --qformat fp8);
# fp8_per_channel_per_token: a weight scale per output channel, activation scales computed per
# token at run time (ModelOpt's FP8_PER_CHANNEL_PER_TOKEN; no calibration of activations).
QFORMATS = ("fp8", "fp8_per_channel_per_token")
PER_TENSOR = ("fp8",)
KV_FORMATS = ("fp8", "fp8_cast", "none")
SCOPES = ("lm", "full")
# FP8_DEFAULT_CFG's entries that keep vision modules out; removed for scope="full".
VISION_DISABLE = (
    "*visual*",
    "*vision_tower*",
    "*vision_model*",
    "*embed_vision*",
    "*multi_modal_projector*",
)
NO_VISION_KV = {"quantizer_name": "*visual*[kv]_bmm_quantizer", "enable": False}


def build_quant_cfg(qformat: str, kv_format: str, scope: str) -> dict[str, Any]:
    """The ModelOpt quant config for (qformat, KV format, scope); a fresh deep copy. Built from
    the presets hf_ptq.py reads (`modelopt.recipe.presets`), the way it merges them."""
    import modelopt.torch.quantization as mtq
    from modelopt.recipe.presets import KV_QUANT_CFG_CHOICES, QUANT_CFG_CHOICES

    cfg = copy.deepcopy(QUANT_CFG_CHOICES[qformat])
    if kv_format != "none":
        kv_entries = copy.deepcopy(KV_QUANT_CFG_CHOICES[kv_format]["quant_cfg"])
        cfg = mtq.update_quant_cfg_with_kv_cache_quant(cfg, kv_entries)
    if scope == "full":
        cfg["quant_cfg"] = [
            e for e in cfg["quant_cfg"] if e.get("quantizer_name") not in VISION_DISABLE
        ]
        cfg["quant_cfg"].append(dict(NO_VISION_KV))
    return cfg


def language_model_lineage(model) -> list:
    from modelopt.torch.export.model_utils import get_language_model_from_vl

    lineage = get_language_model_from_vl(model)
    if lineage is None:
        raise ValueError(f"{type(model).__name__}: no language model found inside it")
    return lineage


def disable_outside_language_model(model) -> list[str]:
    """Give every module outside the language model disabled quantizers (hf_ptq step 1).

    Returns the names of those top-level modules (e.g. `lm_head`, `model.visual`).
    """
    import modelopt.torch.quantization as mtq

    *ancestors, lm = language_model_lineage(model)
    disabled = {"quant_cfg": [{"quantizer_name": "*", "enable": False}], "algorithm": "max"}
    keep = set(map(id, ancestors)) | {id(lm)}
    names = {id(m): n for n, m in model.named_modules()}
    outside = []
    for ancestor in ancestors:
        for _, child in ancestor.named_children():
            if id(child) not in keep:
                mtq.quantize(child, disabled, forward_loop=None)
                keep.add(id(child))
                outside.append(names[id(child)])
    return outside


def quantize_model(model, cfg: dict[str, Any], scope: str, forward_loop) -> list[str]:
    """Insert quantizers and calibrate with `forward_loop(module)`, ModelOpt's convention: it is
    handed the module being quantized (the language model for scope="lm"); the image-text loop
    ignores it and runs the whole VLM, so the vision tower feeds the language model.

    Returns the modules kept out as "outside the language model" (empty for scope="full").
    """
    import modelopt.torch.quantization as mtq

    if scope == "lm":
        outside = disable_outside_language_model(model)
        mtq.quantize(language_model_lineage(model)[-1], cfg, forward_loop=forward_loop)
        return outside
    mtq.quantize(model, cfg, forward_loop=forward_loop)
    return []
