"""One quantized variant's report page, composed from the stages' renderers.

Each section comes from the typed result of the stage that measured it: quantize's run.json and
precision_map.json (`quantize.render`), infer's run folder (`infer.render`), the eval JSON
(`eval.render`), the bench JSON (`bench.render`) and the check-vllm verdict quantize recorded
with the export. A stage that has not run gets a section that says so and gives the command.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

from vlmquant.bench import render as bench_render
from vlmquant.checkpoint.headers import read_json, summarize
from vlmquant.core.typed import Result
from vlmquant.eval import render as eval_render
from vlmquant.infer import render as infer_render
from vlmquant.quantize import render as quantize_render
from vlmquant.results.bench import BenchResult
from vlmquant.results.check import Verdict
from vlmquant.results.eval import EvalResult
from vlmquant.results.infer import InferRun
from vlmquant.results.quantize import PrecisionMap, QuantizeRun
from vlmquant.results.runs import Run

SECTIONS = (
    "Models and sizes",
    "Calibration dataset",
    "PTQ settings",
    "Mixed-precision scheme",
    "vLLM inference test",
    "Fidelity",
    "Performance",
    "vLLM compatibility",
    "Reproduce",
)
R = TypeVar("R", bound=Result)


def recorded(cls: type[R], path: Path) -> R | None:
    """The result a stage recorded at `path`, None if it has not run (bad input if the file
    is not such a result)."""
    return cls.read(path) if path.is_file() else None


def not_run(what: str, command: str) -> list[str]:
    return [f"_Not run yet._ {what} Run:", "", f"    {command}", ""]


def sizes(base: Path | None, variant: Path) -> list[str]:
    lines = ["| checkpoint | format | size (GiB) |", "|---|---|---|"]
    for path in filter(None, (base, variant)):
        s = summarize(path)
        lines.append(f"| {path.name} | {s['format']} | {s['safetensors_gib']:.3f} |")
    return lines + [""] + provenance(base, variant)


def provenance(base: Path | None, variant: Path) -> list[str]:
    """Where the weights came from, as `make-tiny --lm` recorded it in the checkpoint's
    config.json (the trained language model, its licence, the random vision tower); nothing for
    a checkpoint without that record."""
    for path in filter(None, (base, variant)):
        config = read_json(path / "config.json")
        src = config.get("vlmquant_source") if isinstance(config, dict) else None
        if isinstance(src, dict):
            return [
                f"- language model: {src.get('language_model', '?')} "
                f"(licence: {src.get('license', '?')})",
                f"- **{src.get('vision_tower', 'vision tower: not recorded')}**",
                "",
            ]
    return []


def compatibility(variant: Path) -> list[str]:
    """The check-vllm verdict quantize recorded with the export (check_vllm.json)."""
    from vlmquant.checkpoint import check_vllm

    verdict = recorded(Verdict, variant / "check_vllm.json")
    if verdict is None:
        return not_run(
            "No check-vllm verdict recorded with the export (quantize records one where vLLM "
            "is installed).",
            f"vlmquant check-vllm {variant}",
        )
    return [
        "Recorded by quantize when it wrote the export:",
        "",
        "```",
        check_vllm.render(verdict),
        "```",
        "",
    ]


def reproduce(runs: list[Run | None]) -> list[str]:
    lines = []
    for r in filter(None, runs):
        argv = ["vlmquant", *r.command[1:]]  # argv[0] is wherever the script was installed
        lines.append(f"- {r.stage} (git {r.git_revision}): `{' '.join(argv)}`")
    return lines + [""]


def render_variant(
    root: Path, base: Path | None, variant: Path, report_dir: Path, plot_dir: Path | None = None
) -> tuple[str, dict[str, Any]]:
    """The variant's page (links relative to `report_dir`) and its index row; its plot is
    written to `plot_dir` (default `report_dir`)."""
    name = variant.name
    run = QuantizeRun.read(variant / "run.json")
    pmap = recorded(PrecisionMap, variant / "precision_map.json")
    runs = root / "runs" / name
    # in suggested commands: the checkpoint the variant was made from, when it is not here
    base_arg = base or run.config.get("model") or "BASE_CHECKPOINT"
    fid = recorded(EvalResult, runs / "fidelity.json")
    bench = recorded(BenchResult, root / "runs" / "bench.json")
    infer_dir = runs / "infer"
    infer_run = recorded(InferRun, infer_dir / "run.json")
    png = f"report-{name}-layers.png"
    out: dict[str, list[str]] = {
        "Models and sizes": sizes(base, variant),
        "Calibration dataset": quantize_render.calibration(run),
        "PTQ settings": quantize_render.ptq(run),
        "Mixed-precision scheme": quantize_render.scheme(
            run, pmap, os.path.relpath(variant / "precision_map.json", report_dir)
        ),
    }
    out["vLLM inference test"] = (
        infer_render.report_section(infer_dir, report_dir)
        if infer_run
        else not_run(
            "No vLLM samples recorded.",
            f"vlmquant infer --model {variant} --compare {base_arg} --out-dir {infer_dir}",
        )
    )
    if fid:
        eval_render.layer_plot(fid, (plot_dir or report_dir) / png)
        out["Fidelity"] = eval_render.report_section(fid, png)
    else:
        out["Fidelity"] = not_run(
            "No fidelity measured.",
            f"vlmquant eval --base {base_arg} --quantized {variant} --out {runs / 'fidelity.json'}",
        )
    mine = bench_render.for_variant(bench, name) if bench else None
    out["Performance"] = (
        bench_render.report_section(mine, name)
        if mine
        else not_run(
            "No benchmark recorded (it needs a GPU).",
            f"vlmquant bench --model {base_arg} --model {variant} "
            f"--out {root / 'runs' / 'bench.json'}",
        )
    )
    out["vLLM compatibility"] = compatibility(variant)
    out["Reproduce"] = reproduce([run, infer_run, fid.run if fid else None])
    lines = [
        f"# {root.name} — {name}",
        "",
        "Generated by `vlmquant report` from the recorded runs; do not edit by hand.",
        "",
    ]
    for section in SECTIONS:
        lines += [f"## {section}", "", *out[section]]
    text = fid.groups.get("text") if fid else None
    headline = {
        "size_gib": summarize(variant)["safetensors_gib"],
        "ppl_ratio": text.ppl_ratio if text else None,
        "kld_mean": text.kld_mean if text else None,
        "top1": text.top1_agreement if text else None,
        # this variant's own ratio line (for_variant: `x_vlm` is not `x`)
        "speedup": next((e["single_stream_tok_s"] for e in mine.ratios.values()), None)
        if mine
        else None,
    }
    return "\n".join(lines), headline
