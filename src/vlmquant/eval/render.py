"""Render eval JSON files as one markdown page (fidelity tables, worst layers, vLLM check).

    vlmquant report --results FOLDER   (renders this page, see vlmquant.report.results)

Every number comes from the JSON files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlmquant.core.markdown import notes

GROUP_COLUMNS = (
    "tokens",
    "ppl_base",
    "ppl_quant",
    "ppl_ratio",
    "kld_mean",
    "kld_median",
    "kld_p99",
    "kld_max",
    "top1_agreement",
    "kld_mean_ci95",
    "ppl_ratio_ci95",
)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:  # e.g. no interval from a single sample
        return "n/a"
    if isinstance(v, list):  # a 95% interval
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def section(name: str, r: dict[str, Any]) -> list[str]:
    run = r["run"]
    lines = [
        f"## {name}",
        "",
        f"- base: `{r['base']}`",
        f"- quantized: `{r['quantized']}`",
        f"- eval set: {r['eval_set']['text_samples']} text samples, "
        f"{r['eval_set']['image_text_samples']} image+text samples (held out from "
        f"{r['eval_set']['held_out_from']})",
        f"- emulated engine arithmetic: {r.get('emulated_kernels', 'cuda (not recorded)')}",
        "- time: " + ", ".join(f"{k} {v} s" for k, v in run["timings_s"].items()),
        "- memory: " + ", ".join(f"{k} {v}" for k, v in run["memory"].items()),
        "",
        "| group | " + " | ".join(GROUP_COLUMNS) + " |",
        "|---|" + "---|" * len(GROUP_COLUMNS),
    ]
    for group, g in r["groups"].items():
        lines.append(f"| {group} | " + " | ".join(_fmt(g.get(c, "")) for c in GROUP_COLUMNS) + " |")
    lines += [
        "",
        "Ten worst layers by activation error (FP8 output vs BF16 output on the same BF16 input):",
        "",
        "| module | activation error | weight error |",
        "|---|---|---|",
    ]
    for w in r["worst_layers"]:
        lines.append(f"| {w['module']} | {w['activation_error']:.4f} | {w['weight_error']:.4f} |")
    v = r["vllm"]
    lines += [
        "",
        "vLLM check: "
        + (
            v["skipped"]
            if "skipped" in v
            else f"vLLM {v['vllm_version']}, {v['tokens']} tokens, NLL base {v['nll_base']:.4f} / "
            f"quantized {v['nll_quant']:.4f} (emulation: {r['groups']['text']['nll_base']:.4f} / "
            f"{r['groups']['text']['nll_quant']:.4f}), PPL ratio {v['ppl_ratio']:.4f}, "
            f"top-1 base vs quantized {v['top1_agreement_base_vs_quant']:.3f}, emulation vs vLLM "
            f"{v['top1_agreement_emulation_vs_vllm']:.3f} (clear positions: "
            f"{v['top1_agreement_emulation_vs_vllm_clear']['agreement']})"
        ),
        "",
    ]
    floor = r.get("emulation_noise_floor")  # results before it existed have none
    if floor:
        clear = floor["top1_agreement_clear"]["agreement"]
        lines += [
            f"Noise floor: the emulation against itself with its FP8 linears' outputs nudged by "
            f"{floor['nudge']:g} (relative, before BF16 rounding) agrees on top-1 at "
            f"{floor['top1_agreement']:.3f} of {floor['positions']} positions (clear positions: "
            f"{'n/a' if clear is None else f'{clear:.3f}'}); an engine whose sums run in another "
            "order cannot be expected to agree more closely.",
            "",
        ]
    return lines


def render(title: str, files: list[Path]) -> str:
    """`notes.md` beside the first file, when present, goes under the title (context only)."""
    lines = [f"# {title}", "", *(notes(files[0].parent) if files else [])]
    for f in files:
        lines += section(f.stem, json.loads(f.read_text()))
    return "\n".join(lines)
