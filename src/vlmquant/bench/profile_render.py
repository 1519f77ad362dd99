"""The bench page's profile sections: where one decode step's time goes (`bench
--profile-steps`), and one image request against a text prompt of its length, from the
profiler tables a bench result carries (`results.bench.BenchModel.profile`, `.image_profile`)."""

from __future__ import annotations

from typing import Any

from vlmquant.bench.measure import kernel_category
from vlmquant.core.markdown import table_cell
from vlmquant.results.bench import BenchModel, ImageProfile


def step_breakdown(r: BenchModel) -> dict[str, Any]:
    """One decode step: unprofiled time (the engine's own single-stream TPOT), GPU kernel time
    by category from the profiled run, and the difference: GPU idle (launch gaps, CPU work)."""
    p = r.profile or {}
    step = 1e6 * r.single_stream.tpot_s.median
    if "kernels" in p:  # every kernel recorded: categorize with the current rules
        cats: dict[str, float] = {}
        for k in p["kernels"]:
            c = kernel_category(k["name"])
            cats[c] = cats.get(c, 0.0) + k["us_per_step"]
    else:  # older runs kept the top kernels only: re-file those under the current rules
        cats = dict(p["categories_us_per_step"])
        for k in p["top_kernels"]:
            now = kernel_category(k["name"])
            if now != k["category"]:
                cats[k["category"]] -= k["us_per_step"]
                cats[now] = cats.get(now, 0.0) + k["us_per_step"]
    return {
        "step_us": step,
        "gpu_busy_us": p["gpu_busy_us_per_step"],
        "gpu_idle_us": max(step - p["gpu_busy_us_per_step"], 0.0),
        "profiled_wall_us": p["wall_us_per_step"],
        "launches": p["kernel_launches_per_step"],
        "categories": cats,
    }


def profile_lines(results: list[BenchModel]) -> list[str]:
    """Per engine: where one decode step's time goes (GPU kernels by category, idle GPU)."""
    profiled = [r for r in results if r.profile]
    if not profiled:
        return []
    cats = sorted({c for r in profiled for c in step_breakdown(r)["categories"]})
    lines = [
        "",
        "## Decode step profile (torch profiler, single stream)",
        "",
        "Microseconds per decode step. step = the engine's unprofiled time per output token; "
        "GPU busy = summed kernel time in a profiled run of the same engine (prompt 128, 64 "
        "decode steps, prefill subtracted); idle = step - busy (launch gaps, CPU work). The "
        "profiled wall time is longer than the step: the profiler itself slows the host.",
        "",
        "| model [mode] | step | GPU busy | idle | profiled wall | kernels/step | "
        + " | ".join(cats)
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(cats),
    ]
    for r in profiled:
        b = step_breakdown(r)
        lines.append(
            f"| {r.label} | {b['step_us']:.0f} | {b['gpu_busy_us']:.0f} | {b['gpu_idle_us']:.0f} "
            f"| {b['profiled_wall_us']:.0f} | {b['launches']:.0f} | "
            + " | ".join(f"{b['categories'].get(k, 0.0):.0f}" for k in cats)
            + " |"
        )
    for r in profiled:
        lines += [
            "",
            f"Top kernels, {r.label}:",
            "",
            "| kernel | category | us/step | calls |",
            "|---|---|---|---|",
        ]
        for k in (r.profile or {})["top_kernels"]:
            lines.append(
                f"| {table_cell(k['name'], 90)} | {kernel_category(k['name'])} "
                f"| {k['us_per_step']:.1f} | {k['calls']} |"
            )
    return lines


def image_profile_lines(results: list[BenchModel]) -> list[str]:
    """Per engine start: one image request and a text prompt of the same token count under the
    profiler (wall, GPU busy, the image's GPU share by kernel category)."""
    profiled = [r for r in results if r.image_profile is not None]
    rows = [
        (r, k, p)
        for r in profiled
        for k, p in enumerate(r.image_profile_starts or [r.image_profile], 1)
    ]
    if not rows:
        return []
    cats = sorted({c for _, _, p in rows for c in p.image["categories_ms"]})
    lines = [
        "",
        "## Image request profile (torch profiler)",
        "",
        "Milliseconds, one profiled request per engine start: a fresh image (the vision tower "
        "runs) and a text prompt of the same token count. GPU busy = summed kernel time; host "
        "= wall - GPU busy (preprocessing, scheduling, launch gaps; the profiler slows the host, "
        "so wall is longer than unprofiled). The image's share = image - text, per kernel "
        "category. The engine ran in the bench process for this (VLLM_ENABLE_V1_MULTIPROCESSING"
        "=0), so every time on this page is from such an engine.",
        "",
        "| model [mode] | start | tokens | image wall | image GPU busy | image host "
        "| text wall | text GPU busy | image's GPU share | kernels (image / text) | "
        + " | ".join(f"share: {c}" for c in cats)
        + " |",
        "|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(cats),
    ]
    for r, k, p in rows:
        img, txt = p.image, p.text_same_len
        share = {
            c: img["categories_ms"].get(c, 0.0) - txt["categories_ms"].get(c, 0.0) for c in cats
        }
        lines.append(
            f"| {r.label} | {k} | {p.prompt_tokens} | {img['wall_ms']:.1f} "
            f"| {img['gpu_busy_ms']:.1f} | {img['wall_ms'] - img['gpu_busy_ms']:.1f} "
            f"| {txt['wall_ms']:.1f} | {txt['gpu_busy_ms']:.1f} "
            f"| {img['gpu_busy_ms'] - txt['gpu_busy_ms']:.1f} "
            f"| {img['kernel_launches']} / {txt['kernel_launches']} | "
            + " | ".join(f"{share[c]:.1f}" for c in cats)
            + " |"
        )
    lines += _host_scopes(rows)
    for r in profiled:
        lines += [
            "",
            f"Top kernels of the image request, {r.label} (first start):",
            "",
            "| kernel | category | ms | calls |",
            "|---|---|---|---|",
        ]
        for kern in r.image_profile.image["top_kernels"]:
            lines.append(
                f"| {table_cell(kern['name'], 90)} | {kern['category']} "
                f"| {kern['ms']:.2f} | {kern['calls']} |"
            )
    return lines


def _host_scopes(rows: list[tuple[BenchModel, int, ImageProfile]]) -> list[str]:
    """Where the image request's host time goes: ms inside each of vLLM's model-runner scopes
    (CPU time, which includes the runner's waits on the GPU) and outside them (the front end:
    chat template, image processor, hashing, scheduling, output handling). Runs profiled
    before the scopes were recorded have no table."""
    rows = [(r, k, p) for r, k, p in rows if "host_scopes_ms" in p.image]
    if not rows:
        return []
    names = sorted({n for _, _, p in rows for n in p.image["host_scopes_ms"]})
    lines = [
        "",
        "Host time of the image request by vLLM's model-runner scopes (CPU ms under the "
        "profiler with CPU tracing on; a scope's time includes its waits on the GPU). Outside "
        "the runner = image wall - the scopes' sum: the front end and the scheduler.",
        "",
        "| model [mode] | start | image wall | "
        + " | ".join(f"runner: {n}" for n in names)
        + " | outside the runner | text: outside the runner |",
        "|---|---|---|" + "---|" * len(names) + "---|---|",
    ]
    for r, k, p in rows:
        img, txt = p.image, p.text_same_len
        scopes = img["host_scopes_ms"]
        outside = img["wall_ms"] - sum(scopes.values())
        text_out = txt["wall_ms"] - sum(txt.get("host_scopes_ms", {}).values())
        lines.append(
            f"| {r.label} | {k} | {img['wall_ms']:.1f} | "
            + " | ".join(f"{scopes.get(n, 0.0):.1f}" for n in names)
            + f" | {outside:.1f} | {text_out:.1f} |"
        )
    return lines
