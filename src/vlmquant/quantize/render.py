"""quantize's renderer: a variant report's calibration, PTQ-settings and mixed-precision
sections, from the export's run.json, precision_map.json and its calibration set's manifest
(`results.quantize`, `results.calib`)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from vlmquant.core.markdown import table_cell
from vlmquant.results.calib import Manifest
from vlmquant.results.quantize import BudgetChoice, PrecisionMap, QuantizeRun


def calibration(run: QuantizeRun) -> list[str]:
    calib = Path(run.config["calib"])
    manifest_path = calib.with_suffix(".manifest.json")
    m = Manifest.read(manifest_path) if manifest_path.is_file() else None
    c = run.calibration
    src = (
        f"{m.source.kind} `{m.source.path}`" + (" — **synthetic**" if m.source.synthetic else "")
        if m
        else "not recorded (no manifest beside the set: not a set `vlmquant calib` wrote)"
    )
    chosen = f"{m.counts.selected} captions, seed {m.seed}" if m else "? captions"
    cut = f"x <= {c.max_seq} tokens" if c.mode == "text" else "(image-text rows, not cut)"
    return [
        f"- file: `{calib}` (sha256 `{run.inputs['calib'].get('sha256', '?')}`)",
        f"- source: {src}",
        f"- set: {chosen}; used {c.samples} {cut} ({c.mode}, batch {c.batch_size})",
        "",
    ]


def ptq(run: QuantizeRun) -> list[str]:
    cfg, v = run.config, run.versions
    return [
        f"- qformat {cfg['qformat']}, KV cache {cfg['kv_cache_qformat']}, scope "
        f"{cfg['scope']}, algorithm {run.calibration.algorithm}",
        f"- nvidia-modelopt {v.get('nvidia-modelopt')}, torch {v.get('torch')}, "
        f"transformers {v.get('transformers')} on {run.device_name}",
        "- time (s): " + ", ".join(f"{k} {t}" for k, t in run.timings_s.items()),
        "- peak memory: " + ", ".join(f"{k} {m}" for k, m in run.memory.items()),
        f"- fused-scale unification: {run.fused_scales}",
        *budget_lines(run.kld_budget),
        "",
    ]


def budget_lines(choice: BudgetChoice | None) -> list[str]:
    """The --kld-budget choice: every unit kept BF16 with the measured cost that put it there."""
    if choice is None:
        return []
    m = choice.measured
    measured = (
        f"measured {m.kld_mean:.4f} (predicted {choice.predicted_kld:.4f}) on {m.tokens} tokens"
        if m
        else f"predicted {choice.predicted_kld:.4f}, not measured"
    )
    met = {True: "met", False: "MISSED", None: "not measured"}[choice.met]
    kv = "FP8" if choice.kv_cache_fp8 else "BF16 (its FP8 capacity given up)"
    if choice.kv_cache_fp8 and choice.kv_cache_bf16_layers:
        kv = (
            f"FP8 except layers {', '.join(map(str, choice.kv_cache_bf16_layers))} "
            f"(BF16: {choice.kv_cache_bytes_vs_fp8:.3g}x an all-FP8 cache's bytes per token)"
        )
    lines = [
        f"- KLD budget {choice.budget:g}: {met} — {measured}; "
        f"{choice.share_of_saving_kept:.0%} of the whole export's weight-bytes saving kept; "
        f"KV cache {kv}",
    ]
    for k in choice.kept_bf16:
        if k.gain is not None:  # one layer's KV cache
            lines.append(
                f"  - kept BF16: `{k.unit}`, its KV cache BF16 gains KLD {k.gain:.4g} in the "
                f"export (cost KLD {k.cost:.4g} with only it in FP8)"
            )
            continue
        lines.append(
            f"  - kept BF16: `{k.unit}`, cost KLD {k.cost:.4g} with only it in FP8, "
            f"{k.weight_bytes_saved / 2**20:.2f} MiB it would have saved"
        )
    if len(choice.rounds) > 1:  # a measured miss made more exports: each, in order
        for i, r in enumerate(choice.rounds, 1):
            lines.append(
                f"  - export {i}: aimed at predicted KLD {r.aim:.4g}, {r.units_bf16} units BF16, "
                f"predicted {r.predicted_kld:.4f}, measured {r.measured_kld:.4f} "
                f"({'met' if r.met else 'missed'}), {r.share_of_saving_kept:.0%} of the saving kept"
            )
    return lines


def scheme(run: QuantizeRun, pmap: PrecisionMap | None, pmap_link: str) -> list[str]:
    lines = ["Quant-config rules in the order ModelOpt applies them (later entries win):", ""]
    for i, e in enumerate(run.quant_cfg["quant_cfg"], 1):
        what = "disable" if e.get("enable") is False else json.dumps(e.get("cfg", {}))
        parent = f" [{e['parent_class']}]" if e.get("parent_class") else ""
        lines.append(f"{i}. `{e['quantizer_name']}`{parent}: {what}")
    if pmap is None:
        return [
            *lines,
            "",
            "_No precision_map.json beside the export, so no per-module precision here; "
            "re-export with `vlmquant quantize` to record it._",
        ]
    groups: Counter = Counter()
    for name, m in pmap.modules.items():
        groups[(re.sub(r"\.\d+\.", ".N.", name), m.precision, m.rule)] += 1
    lines += [
        "",
        "Resulting precision, grouped (`N` = every layer/block index):",
        "",
        "| count | modules | precision | decided by |",
        "|---|---|---|---|",
    ]
    for (pattern, prec, rule), n in sorted(groups.items()):
        lines.append(f"| {n} | `{pattern}` | {prec} | {table_cell(rule, 70)} |")
    kv = pmap.kv_cache_scales_exported
    lines += [
        "",
        f"KV cache: {len(kv)} scale tensors (k_scale/v_scale)"
        + (", FP8" if kv else ", none exported"),
        "",
        f"Full per-module table: [precision_map.json]({pmap_link})",
        "",
    ]
    return lines
