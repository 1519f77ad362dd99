"""Render a report per quantized variant from the recorded runs, and the reports index.

    vlmquant report --model-root models/qwen2_5_vl_3b_instruct
    vlmquant report --results docs/results --readme README.md   (the measured-results pages)

Reads only what the stages wrote: models/<model>/checkpoints/*, quantized/<variant>/
(run.json, precision_map.json, safetensors headers), runs/<variant>/infer/ (run.json,
compare.json), runs/<variant>/fidelity.json, runs/bench.json. Writes
models/<model>/reports/report-<variant>.md (+ a per-layer error PNG) and reports/index.md.
Each page is composed by `report.variant` from the stages' own renderers; the results pages
are `report.results`'.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from vlmquant.core.config import setting
from vlmquant.core.errors import BadInput
from vlmquant.core.outputs import check_apart, check_output, writable_folder, write_text_atomic
from vlmquant.report.variant import render_variant
from vlmquant.results.quantize import QuantizeRun


@dataclasses.dataclass
class ReportConfig:
    model_root: Path | None = setting(None, "models/<model> folder")
    index: Path | None = setting(
        None,
        "reports index to write (default: reports/index.md beside models/ for a model root "
        "models/<model>, else <model root>/reports/index.md)",
    )
    results: Path | None = setting(
        None,
        "render every page of a results folder (docs/results) from the result files beside "
        "them instead of the model reports (see vlmquant.report.results)",
    )
    readme: Path | None = setting(
        None, "with --results: also the headline block of this README (README.md)"
    )
    check: bool = setting(
        False, "with --results: write nothing; exit 2 naming each page that is stale"
    )


def base_of(variant: Path, bases: list[Path]) -> Path | None:
    """The checkpoint the variant was quantized from (its run.json's --model) when it is one of
    the model's checkpoints; with no record of its source, the only checkpoint there; else none
    (not a guess)."""
    model = QuantizeRun.read(variant / "run.json").config.get("model")
    if model:
        for b in bases:
            if b.resolve() == Path(model).resolve() or b.name == Path(model).name:
                return b
    # a recorded source that is none of these checkpoints: no base (the only one is another's)
    return bases[0] if len(bases) == 1 and not model else None


def default_index(root: Path) -> Path:
    """models/<model> -> reports/index.md beside models/ (the project's index of every model);
    a model root elsewhere keeps its index in its own reports/."""
    if root.resolve().parent.name == "models":
        return root.resolve().parent.parent / "reports" / "index.md"
    return root / "reports" / "index.md"


def run(cfg: ReportConfig) -> Path:
    if cfg.results is not None:
        return results_pages(cfg)
    if cfg.readme is not None or cfg.check:
        raise BadInput("--readme and --check go with --results DIR; pass it or drop them")
    root = cfg.model_root
    if root is None:
        raise BadInput(
            "report: pass --model-root models/<model> (the folder holding quantized/), or "
            "--results DIR"
        )
    if not (root / "quantized").is_dir():
        raise BadInput(
            f"--model-root {root}: no quantized/ folder; pass models/<model> after "
            "running `vlmquant quantize`"
        )
    variants = sorted(p for p in (root / "quantized").iterdir() if (p / "run.json").is_file())
    if not variants:
        raise BadInput(f"--model-root {root}: no finished quantized variant (run.json) in it")
    bases = sorted(p for p in (root / "checkpoints").glob("*") if (p / "config.json").is_file())
    report_dir = root / "reports"
    index_path = cfg.index or default_index(root)
    # the shared output checks (a .md file, not a folder, a writable place); the index is
    # rewritten on every run, so an existing one is replaced, but only one this stage wrote
    check_output(index_path, force=True, kind="file", suffix=".md")
    if index_path.is_file() and INDEX_MARK not in _head(index_path):
        raise BadInput(
            f"--index {index_path}: exists and is no index `vlmquant report` wrote; pass another "
            "path or move that file"
        )
    for ckpt in [*bases, *variants]:  # the index may not land in (or replace) a checkpoint
        check_apart(index_path, {"checkpoint": ckpt})
    writable_folder(report_dir)  # before anything is written
    # everything is rendered first (plots into a staging folder), then written: a failure
    # midway leaves the previous reports as they were
    staging = Path(tempfile.mkdtemp(prefix=".report-staging-", dir=root))
    try:
        rows, pages = [], {}
        for variant in variants:
            text, head = render_variant(root, base_of(variant, bases), variant, report_dir, staging)
            path = report_dir / f"report-{variant.name}.md"
            pages[path] = text
            rows.append((variant.name, path, head))
        index_text = index_markdown(root, rows, index_path)
        report_dir.mkdir(parents=True, exist_ok=True)
        for png in staging.iterdir():
            os.replace(png, report_dir / png.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for path, text in pages.items():
        write_text_atomic(path, text)
        print(f"report: {path}")
    index_path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(index_path, index_text)
    print(f"report: {index_path}")
    return report_dir


def results_pages(cfg: ReportConfig) -> Path:
    from vlmquant.report import results

    if cfg.model_root is not None or cfg.index is not None:
        raise BadInput(
            "--results renders a results folder, not a model's reports; drop "
            "--model-root/--index or --results"
        )
    written = results.run(cfg.results, cfg.readme, cfg.check)
    if cfg.check:
        print(f"report: every page of {cfg.results} is current")
    for path in written:
        print(f"report: {path}")
    return cfg.results


INDEX_MARK = "Generated by `vlmquant report`."


def _head(path: Path, size: int = 4096) -> str:
    with open(path, "rb") as f:
        return f.read(size).decode("utf-8", errors="replace")


def index_markdown(root: Path, rows: list, index_path: Path) -> str:
    def fmt(v: Any, spec: str) -> str:
        return "—" if v is None else format(v, spec)

    lines = [
        "# Reports",
        "",
        INDEX_MARK,
        "",
        "| model | variant | size GiB | PPL ratio | KLD mean | top-1 | single-stream speedup "
        "| report |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, path, h in rows:
        lines.append(
            f"| {root.name} | {name} | {fmt(h['size_gib'], '.3f')} "
            f"| {fmt(h['ppl_ratio'], '.4f')} | {fmt(h['kld_mean'], '.4g')} "
            f"| {fmt(h['top1'], '.3f')} | {fmt(h['speedup'], '.2f')} "
            f"| [{path.name}]({os.path.relpath(path, index_path.parent)}) |"
        )
    return "\n".join(lines) + "\n"
