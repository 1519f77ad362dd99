"""Give fused shards one weight scale offline, exactly as vLLM would at load time.

vLLM runs q/k/v (and gate/up) as one fused GEMM with one per-tensor weight scale. When the
checkpoint's shards carry different scales, vLLM's `requantize_with_max_scale` dequantizes
each shard (FP8 -> float16 -> x scale) and requantizes it with the largest scale of the group
(x * (1 / max_scale), saturated to +-448, cast to E4M3). The GPU build does this at every
load with a CUDA op; the CPU build has no such op and fails ("_C::static_scaled_fp8_quant()
expected at most 0 argument(s)"). Doing the same arithmetic here, once, gives a checkpoint
both builds load, with the weights the GPU build would have used. Input scales of a group are
set to their maximum, which is what vLLM uses for the fused input.

Per-channel weight scales (`fp8_per_channel_per_token`) need none of this: a fused GEMM
concatenates the shards' row scales as they are, so such groups are left alone (and their
activations have no static input scale).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

FUSED = ({"q_proj", "k_proj", "v_proj"}, {"gate_proj", "up_proj"})
FP8_MAX = 448.0


def requantize(weight, old_scale, new_scale):
    """vLLM's per-shard requantization: fp8 -> fp16 * old_scale -> fp32 * (1/new) -> fp8."""
    import torch

    dequant = weight.to(torch.float16) * old_scale
    scaled = dequant.to(torch.float32) * (1.0 / new_scale.to(torch.float32))
    return scaled.clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)


def fused_groups(names: list[str]) -> list[list[str]]:
    """Module prefixes that vLLM fuses, e.g. [...q_proj, ...k_proj, ...v_proj] per layer."""
    by_parent: dict[str, set[str]] = defaultdict(set)
    for name in names:
        if name.endswith(".weight_scale"):
            parent, leaf = name[: -len(".weight_scale")].rsplit(".", 1)
            by_parent[parent].add(leaf)
    groups = []
    for parent, leaves in sorted(by_parent.items()):
        for fused in FUSED:
            if fused <= leaves:
                groups.append([f"{parent}.{leaf}" for leaf in sorted(fused)])
    return groups


def unify(state: dict[str, Any]) -> dict[str, Any]:
    """Rewrite `state` (name -> tensor) in place; return a summary of what changed."""
    import torch

    changed, max_rel = 0, 0.0
    groups = fused_groups(list(state))
    per_channel = [g for g in groups if any(state[f"{m}.weight_scale"].numel() > 1 for m in g)]
    groups = [g for g in groups if g not in per_channel]
    for group in groups:
        scales = [state[f"{m}.weight_scale"] for m in group]
        top = torch.stack([s.float() for s in scales]).max()
        for m, s in zip(group, scales, strict=True):
            if not torch.equal(s.float(), top):
                state[f"{m}.weight"] = requantize(state[f"{m}.weight"], s.float(), top)
                state[f"{m}.weight_scale"] = top.clone().to(s.dtype)
                max_rel = max(max_rel, float((top - s.float()) / top))
                changed += 1
        inputs = [f"{m}.input_scale" for m in group if f"{m}.input_scale" in state]
        if inputs:
            top_in = torch.stack([state[k].float() for k in inputs]).max()
            for k in inputs:
                state[k] = top_in.clone().to(state[k].dtype)
    return {
        "groups": len(groups),
        "per_channel_groups_left_alone": len(per_channel),
        "shards_requantized": changed,
        "max_relative_scale_increase": round(max_rel, 6),
    }


def unify_checkpoint(checkpoint: Path) -> dict[str, Any]:
    """Apply `unify` to every safetensors shard of an exported checkpoint (rewritten in place)."""
    from safetensors.torch import load_file, save_file

    files = sorted(checkpoint.glob("*.safetensors"))
    state, owner = {}, {}
    for f in files:
        for k, v in load_file(f).items():
            state[k], owner[k] = v, f
    summary = unify(state)
    for f in files:
        save_file(
            {k: v.contiguous() for k, v in state.items() if owner[k] == f},
            f,
            metadata={"format": "pt"},
        )
    return summary
