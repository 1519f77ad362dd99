"""How closely two sets of outputs agree, beyond the token statistics of eval.metrics: each FP8
linear's error against its BF16 output, top-1 agreement at clear positions (a top-2 margin of
at least CLEAR_MARGIN nats), and the emulation's noise floor (its agreement with itself when
its FP8 outputs are nudged)."""

from __future__ import annotations

import math
from typing import Any

# Top-1 agreement between two FP8 implementations is only well posed where the top-1 is clear:
# positions whose emulated top-1 beats the runner-up by at least this many nats.
CLEAR_MARGIN = 0.5


# the noise floor's nudge: FP8 linears' float32 outputs scaled by 1 + 1e-6 before BF16 rounding
NOISE_NUDGE = 1e-6


def layer_errors(
    base_model, quant_model, fp8_names: list[str], inputs: list[dict], device: str
) -> dict[str, dict[str, float]]:
    """Weight error from the tensors; activation error of each FP8 linear on BF16 inputs."""
    import torch

    from vlmquant.checkpoint.names import hub_name

    base_mods = {hub_name(n): m for n, m in base_model.named_modules()}
    quant_mods = {hub_name(n): m for n, m in quant_model.named_modules()}
    err = {n: {"num": 0.0, "den": 0.0} for n in fp8_names}
    hooks = []
    for name in fp8_names:

        def hook(module, args, output, name=name):
            with torch.no_grad():
                yq = quant_mods[name](args[0]).float()
                yb = output.float()
                err[name]["num"] += float((yq - yb).pow(2).sum())
                err[name]["den"] += float(yb.pow(2).sum())

        hooks.append(base_mods[name].register_forward_hook(hook))
    try:
        with torch.no_grad():
            for enc in inputs:
                base_model(**{k: v.to(device) for k, v in enc.items()})
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for name in fp8_names:
        wb = base_mods[name].weight.detach().float()
        wq = quant_mods[name].weight.detach().float()
        out[name] = {
            "weight_error": float((wq - wb).norm() / wb.norm().clamp_min(1e-30)),
            "activation_error": math.sqrt(err[name]["num"] / err[name]["den"])
            if err[name]["den"] > 0
            else 0.0,
        }
    return out


def noise_floor(quant, samples, encoded, emu_top1, device: str) -> dict[str, Any] | None:
    """How chaotic the FP8 model's top-1 is on this eval set: the emulation against itself with
    every FP8 linear's output nudged by NOISE_NUDGE (relative) before BF16 rounding. An engine
    whose GEMMs sum in another order differs from the emulation at least this much, so this
    agreement, not 1.0, is what emulation vs vLLM can reach unless the two are bit-identical.
    None for a model without FP8 linears."""
    from vlmquant.eval import emulate

    texts = [enc for s, enc in zip(samples, encoded, strict=True) if s.group == "text"]
    nudge = emulate.nudged(quant, NOISE_NUDGE)
    if not nudge.linears or not texts:
        return None
    triples = []
    with nudge:
        for enc, ref in zip(texts, emu_top1, strict=True):
            logits = quant(**{k: v.to(device) for k, v in enc.items()}).logits[0, :-1]
            triples += [
                (a, b, m) for a, (b, m) in zip(logits.argmax(-1).tolist(), ref, strict=True)
            ]
    return {
        "nudge": NOISE_NUDGE,
        "positions": len(triples),
        "top1_agreement": sum(a == b for a, b, _ in triples) / len(triples),
        "top1_agreement_clear": clear_agreement(triples),
    }


def clear_agreement(triples: list[tuple[int, int, float]]) -> dict[str, Any]:
    """Top-1 agreement over the positions (token a, token b, emulated margin) whose margin is
    at least CLEAR_MARGIN."""
    clear = [(a, b) for a, b, margin in triples if margin >= CLEAR_MARGIN]
    return {
        "margin_nats": CLEAR_MARGIN,
        "positions": len(clear),
        "agreement": sum(a == b for a, b in clear) / len(clear) if clear else None,
    }
