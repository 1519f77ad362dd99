"""Render a record of speed attempts: each a bench JSON (with --profile-steps) and what was
tried, predicted and concluded, from a TOML file; every number comes from the JSON files.

    vlmquant report --results FOLDER   (renders this page, see vlmquant.report.results)

TOML: `title`, optional `intro`, then one `[[attempt]]` per run with `name`, `json` (relative
to the TOML file), `change` (what differs from vLLM's defaults), `prediction` (say when it was
written) and `conclusion`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmquant.bench.profile_render import profile_lines, step_breakdown
from vlmquant.bench.render import image_table
from vlmquant.core.markdown import counts_text
from vlmquant.results.bench import BenchResult

CATEGORIES = ("gemm", "attention", "fused elementwise (triton)")


def render(spec: dict[str, Any], base: Path) -> str:
    attempts = spec["attempt"]
    loaded = [BenchResult.read(base / a["json"]) for a in attempts]
    run = loaded[0].run
    versions = ", ".join(
        f"{k} {v}" for k, v in run.versions.items() if k in ("torch", "vllm", "transformers")
    )
    lines = [
        f"# {spec['title']}",
        "",
        f"- card: {loaded[0].card}; all attempts on this card, one session",
        f"- versions: {versions}; code: {run.git_revision}",
        f"- command of the first run: `{' '.join(run.command)}`",
        "",
        *([spec["intro"].strip(), ""] if spec.get("intro") else []),
        "## Every engine",
        "",
        "Microseconds per decode step (single stream, prompt 128). step = unprofiled time per "
        "output token; busy = GPU kernel time; idle = step - busy. LM weights = the language "
        "model's tensors as stored (what each step reads, lm_head aside); GEMM read = LM "
        "weights / gemm time, the rate the matmuls read them at.",
        "",
        "| attempt | model [mode] | tok/s | of roofline | step | busy | idle | "
        + " | ".join(CATEGORIES)
        + " | kernels/step | LM weights GB | GEMM read TB/s |",
        "|---|---|---|---|---|---|---|" + "---|" * len(CATEGORIES) + "---|---|---|",
    ]
    for a, data in zip(attempts, loaded, strict=True):
        for r in data.results:
            head = (
                f"| {a['name']} | {r.label} | {r.single_stream.tok_s:.1f} "
                f"| {100 * r.roofline_fraction:.0f}% | "
            )
            lm_bytes = r.decode_bytes["language_model"]
            if not r.profile:
                step = 1e6 * r.single_stream.tpot_s.median
                lines.append(
                    head
                    + f"{step:.0f} |"
                    + " - |" * (3 + len(CATEGORIES))
                    + f" {lm_bytes / 1e9:.2f} | - |"
                )
                continue
            b = step_breakdown(r)
            gemm_us = b["categories"].get("gemm", 0.0)
            rate = f"{lm_bytes / gemm_us / 1e6:.1f}" if gemm_us else "-"
            lines.append(
                head
                + f"{b['step_us']:.0f} | {b['gpu_busy_us']:.0f} | {b['gpu_idle_us']:.0f} | "
                + " | ".join(f"{b['categories'].get(c, 0.0):.0f}" for c in CATEGORIES)
                + f" | {b['launches']:.0f} | {lm_bytes / 1e9:.2f} | {rate} |"
            )
    for a, data in zip(attempts, loaded, strict=True):
        lines += [
            "",
            f"## {a['name']}",
            "",
            f"- change: {a['change']}",
            f"- prediction: {a['prediction']}",
            f"- result: {a['json']}",
            f"- conclusion: {a['conclusion']}",
        ]
        for r in data.results:
            if r.used.kernels:
                lines.append(f"- kernels vLLM picked, {r.label}: {counts_text(r.used.kernels)}")
        if any(r.image_prefill_s is not None for r in data.results):
            cfg = data.run.config
            lines += [
                "",
                f"Image prompt, `{cfg['image']}` drawn {cfg.get('image_size', 112)} px square, "
                "one output token (a different pixel per request, so no encoder-cache hits):",
                "",
                *image_table(data.results),
            ]
        lines += profile_lines(data.results)
    return "\n".join(lines) + "\n"
