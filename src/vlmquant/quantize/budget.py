"""Choose which units stay BF16 so that the predicted KLD meets a budget (`quantize
--kld-budget X --sensitivity sens.json`).

Prediction, from four measured numbers of the sensitivity file — W (the whole export), L (its
linears FP8 with a BF16 KV cache), K (only the KV cache FP8) and the per-unit costs c — for a
set S of linear units kept BF16, with s = sum of c over S / sum of c over all linears, and a
share t of the FP8 KV cache kept BF16:
    kld = W (1 - s)(1 - t) + L (1 - s) t + K s (1 - t)
exact at its four corners (nothing kept: W; the KV cache BF16: L; every linear BF16: K; both:
0, the base); in between the costs share out the measured totals, so they need not add up.
t is 0 or 1 for the KV cache as one unit; with the sensitivity file's per-layer KV gains g
(what keeping one layer's KV cache BF16 gains in the export), t = sum of g over the layers
kept BF16 / sum of g over all layers, so vLLM's --kv-cache-dtype-skip-layers can keep the few
costly layers BF16 and the rest of the cache FP8.
The choice keeps the units with the most cost per weight byte BF16 first (a greedy knapsack);
the KV cache costs no weight bytes, so when it is a candidate it goes first, layer by layer
from the largest gain (its price is KV-cache capacity, which the report shows), unless
`keep_fp8_kv`.
The prediction is a model: where the export measures above the budget, `refine` aims the next
export lower by the ratio measured / predicted (the miss seen so far) and keeps more units
BF16, for up to `quantize --budget-rounds` exports.
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


def kv_unit(layer: int) -> str:
    return f"layers.{layer}.kv"


def predictor(sens: Sensitivity):
    """kld(share of the FP8 KV cache kept BF16, linear cost kept BF16) from the sensitivity
    file's measured anchors."""
    costs = unit_costs(sens)
    whole = sens.whole_export.kld_mean
    linears = sens.linears_fp8_kv_bf16.kld_mean
    kv_only = next((c for name, c, _ in costs if name == KV_UNIT), None)
    linear_total = sum(c for name, c, _ in costs if name != KV_UNIT)

    def predicted(kv_kept: float, kept_cost: float) -> float:
        s = kept_cost / linear_total if linear_total > 0 else 1.0
        if kv_only is None:  # no FP8 KV cache
            return whole * (1.0 - s)
        t = min(max(kv_kept, 0.0), 1.0)
        return whole * (1 - s) * (1 - t) + linears * (1 - s) * t + kv_only * s * (1 - t)

    return predicted


def kv_candidates(sens: Sensitivity) -> list[tuple[str, float, float]]:
    """(unit, cost alone, share of the FP8 KV cache's gain) for the KV cache as the chooser may
    keep it BF16: per layer where the file measured layers (those with a positive gain), else
    the whole cache as one unit."""
    gains = {r.layer: r for r in sens.kv_layers if r.gain > 0}
    total = sum(r.gain for r in gains.values())
    if gains:
        return [(kv_unit(i), r.cost, r.gain / total) for i, r in gains.items()]
    return [(name, c, 1.0) for name, c, _ in unit_costs(sens) if name == KV_UNIT]


def kv_bytes_vs_fp8(has_kv: bool, kv_fp8: bool, layers: int, bf16_layers: int) -> float | None:
    """KV-cache bytes per token against an all-FP8 cache (a BF16 layer stores 2 bytes a
    value); None without an FP8 KV cache to begin with."""
    if not has_kv:
        return None
    if not kv_fp8:
        return 2.0
    return (layers + bf16_layers) / layers if layers else 1.0


def choose(
    sens: Sensitivity, budget: float, keep_fp8_kv: bool = False, aim: float | None = None
) -> dict[str, Any]:
    """The units to keep BF16 and the prediction that chose them: the fewest bytes whose
    predicted KLD is within `aim` (the budget itself unless a miss lowered it)."""
    costs = unit_costs(sens)
    if budget <= 0:
        raise BadInput(
            f"--kld-budget {budget}: must be above 0 (0 is the BF16 base itself; keep the base "
            "or pass a positive budget)"
        )
    predicted = predictor(sens)
    aim = budget if aim is None else aim
    has_kv = any(name == KV_UNIT for name, _, _ in costs)
    layer_gains = {kv_unit(r.layer): r.gain for r in sens.kv_layers}
    # (unit, cost, weight bytes saved, KV share): the KV cache (0 bytes) first, by its gain
    candidates: list[tuple[str, float, int, float]] = []
    if has_kv and not keep_fp8_kv:
        candidates += [(n, c, 0, t) for n, c, t in kv_candidates(sens)]
        candidates.sort(key=lambda c: -c[3])
    linears = [(n, c, b, 0.0) for n, c, b in costs if n != KV_UNIT]
    linears.sort(key=lambda c: (-(c[1] / c[2]) if c[2] else float("-inf"), -c[1]))
    kept: list[dict[str, Any]] = []
    kv_kept, kept_cost = 0.0, 0.0
    for name, cost, saved, share in candidates + linears:
        if predicted(kv_kept, kept_cost) <= aim:
            break
        kept.append({"unit": name, "cost": cost, "weight_bytes_saved": saved})
        if name in layer_gains:
            kept[-1]["gain"] = layer_gains[name]
        if share:
            kv_kept += share
        else:
            kept_cost += cost
    floor = predicted(kv_kept, kept_cost)
    if floor > aim:
        raise BadInput(
            f"--kld-budget {budget}: below what this recipe can reach with every allowed unit "
            f"BF16 (predicted {floor:.4g}"
            + (f" against the {aim:.4g} a measured miss asks" if aim < budget else "")
            + (", the FP8 KV cache kept by --keep-fp8-kv" if keep_fp8_kv else "")
            + "); raise the budget"
        )
    kv_layers = sorted(int(k["unit"].split(".")[1]) for k in kept if k["unit"] in layer_gains)
    all_layers = len(sens.kv_layers)
    kv_fp8 = has_kv and not any(k["unit"] == KV_UNIT for k in kept)
    if kv_layers and len(kv_layers) == all_layers:  # every layer: the whole cache BF16
        kv_fp8, kv_layers = False, []
    kept_linears = sum(1 for k in kept if not k["unit"].endswith((".kv", KV_UNIT)))
    # nothing left to quantize (ModelOpt stops with a traceback), or only KV layers measured
    # to cost nothing
    if kept_linears == len(linears) and (not kv_fp8 or kv_kept >= 1.0 - 1e-9):
        raise BadInput(
            f"--kld-budget {budget}: only the BF16 base itself meets it (every unit would stay "
            "BF16); raise the budget, or use the base"
        )
    saved_total = sum(s for _, _, s in costs)
    saved_kept = sum(k["weight_bytes_saved"] for k in kept)
    return {
        "budget": budget,
        "aim": aim,
        "whole_export_kld": sens.whole_export.kld_mean,
        "predicted_kld": floor,
        "kept_bf16": kept,
        "kv_cache_fp8": kv_fp8,
        "kv_cache_bf16_layers": kv_layers,
        "kv_cache_bytes_vs_fp8": kv_bytes_vs_fp8(has_kv, kv_fp8, all_layers, len(kv_layers)),
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
        if k["unit"] != KV_UNIT and not k["unit"].endswith(".kv"):
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
    result = {**choice, "measured": measured, "met": measured["kld_mean"] <= choice["budget"]}
    return {**result, "rounds": [*choice.get("rounds", []), round_record(result)]}


def round_record(choice: dict[str, Any]) -> dict[str, Any]:
    """One export's line in kld_budget.json's `rounds`: what it aimed at, kept and measured."""
    return {
        "aim": choice.get("aim", choice["budget"]),
        "predicted_kld": choice["predicted_kld"],
        "measured_kld": choice["measured"]["kld_mean"],
        "units_bf16": len(choice["kept_bf16"]),
        "kv_cache_bf16_layers": choice.get("kv_cache_bf16_layers", []),
        "share_of_saving_kept": choice["share_of_saving_kept"],
        "met": choice["met"],
    }


def annotate(pmap: dict[str, Any], choice: dict[str, Any]) -> None:
    """Name in the precision map every module kept BF16 by the budget, with the cost that put
    it there."""
    from vlmquant.quantize.units import GROUPS

    for k in choice["kept_bf16"]:
        if k["unit"] == KV_UNIT:
            continue
        _, layer, group = k["unit"].split(".")
        if group == "kv":
            pmap["kv_cache_bf16_layers"][layer] = (
                f"--kld-budget: keeping its KV cache BF16 gains KLD {k['gain']:.4g}"
            )
            continue
        for leaf in GROUPS[group]:
            entry = pmap["modules"].get(f"model.layers.{layer}.{leaf}")
            if entry is not None:
                entry["kept_bf16_by"] = f"--kld-budget: unit {k['unit']} costs KLD {k['cost']:.4g}"
    pmap["kld_budget"] = choice


def miss_line(choice: dict[str, Any], export_no: int, aim: float) -> str:
    return (
        f"quantize: --kld-budget {choice['budget']:g} missed by export {export_no}: measured "
        f"KLD {choice['measured']['kld_mean']:.4f} (predicted {choice['predicted_kld']:.4f}); "
        f"exporting again, aiming the prediction at {aim:.4f}"
    )


def verdict_line(choice: dict[str, Any]) -> str:
    m = choice["measured"]
    layers = choice.get("kv_cache_bf16_layers") or []
    kv = "" if choice["kv_cache_fp8"] else ", KV cache BF16"
    if layers:
        kv = f", KV cache BF16 in layer{'s' * (len(layers) > 1)} {', '.join(map(str, layers))}"
    return (
        f"quantize: --kld-budget {choice['budget']:g} {'met' if choice['met'] else 'MISSED'}: "
        f"measured KLD {m['kld_mean']:.4f} (predicted {choice['predicted_kld']:.4f}), "
        f"{len(choice['kept_bf16'])} units BF16{kv}, "
        f"{choice['share_of_saving_kept']:.0%} of the weight-bytes saving kept"
        + (f", export {len(choice['rounds'])} of those made" if len(choice["rounds"]) > 1 else "")
    )
