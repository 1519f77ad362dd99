"""After a measured miss, the next export's choice (`quantize --budget-rounds`).

The budget's prediction (`vlmquant.quantize.budget`) shares out measured anchors; where many
units are kept it has come out optimistic (recipes-trained-kvlayers: 0.0295 predicted, 0.0364
measured). Each export is measured, so the miss is known: the next export aims the prediction
at budget * predicted / measured, which keeps more units BF16 along the same order.
"""

from __future__ import annotations

from typing import Any

from vlmquant.core.errors import BadInput
from vlmquant.quantize.budget import choose
from vlmquant.results.sensitivity import Sensitivity


def refine(sens: Sensitivity, choice: dict[str, Any], keep_fp8_kv: bool) -> dict[str, Any] | None:
    """The next export's choice after `choice` measured above its budget: aim the prediction
    at budget * predicted / measured (the prediction scaled by the miss it made) and keep the
    units that takes; None when no more can be kept (the rounds so far go with it)."""
    m, p = choice["measured"]["kld_mean"], choice["predicted_kld"]
    if choice["met"] or m <= 0 or p <= 0:
        return None
    try:
        nxt = choose(sens, choice["budget"], keep_fp8_kv, aim=choice["budget"] * p / m)
    except BadInput:  # every allowed unit is BF16 already, or only the base meets the aim
        return None
    if len(nxt["kept_bf16"]) <= len(choice["kept_bf16"]):
        return None
    return {**nxt, "rounds": choice["rounds"]}
