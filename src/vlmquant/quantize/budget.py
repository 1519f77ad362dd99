"""Choose which units stay BF16 so that the predicted KLD meets a budget (`quantize
--kld-budget X --sensitivity sens.json`).

Prediction, from four measured numbers of the sensitivity file — W (the whole export), L (its
linears FP8 with a BF16 KV cache), K (only the KV cache FP8) and the per-unit costs c — for a
set S of linear units kept BF16, with s = sum of c over S / sum of c over all linears:
    BF16 KV cache:  kld = L * (1 - s)
    FP8 KV cache:   kld = W - (W - K) * s
Each is exact at its ends (nothing kept: the measured L or W; every linear kept: 0, the base, or
the measured K); in between the costs share out the measured total, so costs need not add up.
The choice keeps the units with the most cost per weight byte BF16 first (a greedy knapsack);
the FP8 KV cache costs no weight bytes, so when it is a candidate it goes first (its price is
KV-cache capacity, which the report shows), unless `keep_fp8_kv`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmquant.core.errors import BadInput
from vlmquant.quantize.units import KV_UNIT
from vlmquant.results.sensitivity import Sensitivity


def load(path: Path, base: Path, qformat: str, kv_format: str) -> Sensitivity:
    """A sensitivity file measured on this base with this recipe, or BadInput naming why not."""
    from vlmquant.checkpoint.identity import weights_identity

    fix = f"measure this base: vlmquant sensitivity --base {base} --calib FILE --out {path}"
    if not path.is_file():
        raise BadInput(f"--sensitivity {path}: no such file; {fix}")
    try:
        sens = Sensitivity.read(path)
    except BadInput as e:
        raise BadInput(f"--sensitivity {e}") from None
    if sens.base_identity != weights_identity(base):
        raise BadInput(
            f"--sensitivity {path}: measured on another model ({sens.base}), not on "
            f"--model {base}; {fix}"
        )
    recipe = sens.recipe
    if (recipe.qformat, recipe.kv_cache_qformat) != (qformat, kv_format):
        raise BadInput(
            f"--sensitivity {path}: measured for --qformat {recipe.qformat} "
            f"--kv-cache-qformat {recipe.kv_cache_qformat}, not {qformat} / {kv_format}; "
            f"pass the same flags or {fix}"
        )
    if not sens.units or sens.whole_export.kld_mean < 0:
        raise BadInput(f"--sensitivity {path}: no units measured in it; {fix}")
    return sens


def unit_costs(sens: Sensitivity) -> list[tuple[str, float, int]]:
    """(unit, KLD with only it in FP8, weight bytes it saves) per measured unit."""
    return [(u.unit, u.cost, u.weight_bytes_saved) for u in sens.units]


def predictor(sens: Sensitivity):
    """kld(kv_fp8, linear cost kept BF16) from the sensitivity file's measured anchors."""
    costs = unit_costs(sens)
    whole = sens.whole_export.kld_mean
    linears = sens.linears_fp8_kv_bf16.kld_mean
    kv_only = next((c for name, c, _ in costs if name == KV_UNIT), None)
    linear_total = sum(c for name, c, _ in costs if name != KV_UNIT)

    def predicted(kv_fp8: bool, kept_cost: float) -> float:
        share = kept_cost / linear_total if linear_total > 0 else 1.0
        if kv_fp8 and kv_only is not None:
            return whole - (whole - kv_only) * share
        return (linears if kv_only is not None else whole) * (1.0 - share)

    return predicted


def choose(sens: Sensitivity, budget: float, keep_fp8_kv: bool = False) -> dict[str, Any]:
    """The units to keep BF16 and the prediction that chose them."""
    costs = unit_costs(sens)
    if budget <= 0:
        raise BadInput(
            f"--kld-budget {budget}: must be above 0 (0 is the BF16 base itself; keep the base "
            "or pass a positive budget)"
        )
    predicted = predictor(sens)
    has_kv = any(name == KV_UNIT for name, _, _ in costs)
    candidates = [c for c in costs if not (keep_fp8_kv and c[0] == KV_UNIT)]
    candidates.sort(key=lambda c: (-(c[1] / c[2]) if c[2] else float("-inf"), -c[1]))
    kept: list[dict[str, Any]] = []
    kv_fp8, kept_cost = has_kv, 0.0
    for name, cost, saved in candidates:
        if predicted(kv_fp8, kept_cost) <= budget:
            break
        kept.append({"unit": name, "cost": cost, "weight_bytes_saved": saved})
        if name == KV_UNIT:
            kv_fp8 = False
        else:
            kept_cost += cost
    floor = predicted(kv_fp8, kept_cost)
    if floor > budget:
        raise BadInput(
            f"--kld-budget {budget}: below what this recipe can reach with every allowed unit "
            f"BF16 (predicted {floor:.4g}"
            + (", the FP8 KV cache kept by --keep-fp8-kv" if keep_fp8_kv else "")
            + "); raise the budget"
        )
    if len(kept) == len(costs):  # nothing left to quantize: ModelOpt stops with a traceback
        raise BadInput(
            f"--kld-budget {budget}: only the BF16 base itself meets it (every unit would stay "
            "BF16); raise the budget, or use the base"
        )
    saved_total = sum(s for _, _, s in costs)
    saved_kept = sum(k["weight_bytes_saved"] for k in kept)
    return {
        "budget": budget,
        "whole_export_kld": sens.whole_export.kld_mean,
        "predicted_kld": floor,
        "kept_bf16": kept,
        "kv_cache_fp8": kv_fp8,
        "weight_bytes_saved": saved_total - saved_kept,
        "weight_bytes_saved_by_whole_export": saved_total,
        "share_of_saving_kept": (saved_total - saved_kept) / saved_total if saved_total else 1.0,
    }


def disable_entries(choice: dict[str, Any]) -> list[dict[str, Any]]:
    """ModelOpt quant_cfg entries that keep the chosen linear units unquantized; export then
    lists them in `exclude_modules`, so vLLM runs them BF16."""
    from vlmquant.quantize.units import modelopt_patterns

    entries = []
    for k in choice["kept_bf16"]:
        if k["unit"] != KV_UNIT:
            for pattern in modelopt_patterns(k["unit"]):
                entries.append({"quantizer_name": pattern, "enable": False})
    return entries


def measure(
    choice: dict[str, Any], sens: Sensitivity, cfg, export: Path, device: str
) -> dict[str, Any]:
    """The export's KLD measured by eval's emulation on the sensitivity file's text set (its
    samples, length and held-out captions), and whether the budget was met."""
    import tempfile

    from vlmquant.eval.eval_stage import EvalConfig
    from vlmquant.eval.eval_stage import run as evaluate
    from vlmquant.results.eval import EvalResult

    es = sens.eval_set
    with tempfile.TemporaryDirectory(prefix="vlmquant-budget-") as tmp:
        out = Path(tmp) / "fidelity.json"
        evaluate(
            EvalConfig(
                base=cfg.model,
                quantized=export,
                out=out,
                calib=Path(es.held_out_from) if es.held_out_from else None,
                max_samples=0 if es.user_text else es.text_samples,
                text=Path(es.user_text) if es.user_text else None,
                image_samples=0,
                seq_len=es.seq_len,
                device=device,
                kernels=sens.emulated_kernels,
                vllm=False,
                seed=sens.run.config.get("seed", 1234),
            )
        )
        text = EvalResult.read(out).groups["text"]
    measured = {
        k: getattr(text, k)
        for k in ("tokens", "kld_mean", "kld_mean_ci95", "kld_p99", "top1_agreement")
    }
    return {**choice, "measured": measured, "met": measured["kld_mean"] <= choice["budget"]}


def annotate(pmap: dict[str, Any], choice: dict[str, Any]) -> None:
    """Name in the precision map every module kept BF16 by the budget, with the cost that put
    it there."""
    from vlmquant.quantize.units import GROUPS

    for k in choice["kept_bf16"]:
        if k["unit"] == KV_UNIT:
            continue
        _, layer, group = k["unit"].split(".")
        for leaf in GROUPS[group]:
            entry = pmap["modules"].get(f"model.layers.{layer}.{leaf}")
            if entry is not None:
                entry["kept_bf16_by"] = f"--kld-budget: unit {k['unit']} costs KLD {k['cost']:.4g}"
    pmap["kld_budget"] = choice


def verdict_line(choice: dict[str, Any]) -> str:
    m = choice["measured"]
    kv = "" if choice["kv_cache_fp8"] else ", KV cache BF16"
    return (
        f"quantize: --kld-budget {choice['budget']:g} {'met' if choice['met'] else 'MISSED'}: "
        f"measured KLD {m['kld_mean']:.4f} (predicted {choice['predicted_kld']:.4f}), "
        f"{len(choice['kept_bf16'])} units BF16{kv}, "
        f"{choice['share_of_saving_kept']:.0%} of the weight-bytes saving kept"
    )
