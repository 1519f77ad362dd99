"""Render a report per quantized variant from the recorded runs, and the reports index.

    vlmquant report --model-root models/qwen2_5_vl_3b_instruct
    vlmquant report --results docs/results --readme README.md   (the measured-results pages)

Reads only what the stages wrote: models/<model>/checkpoints/*, quantized/<variant>/
(run.json, precision_map.json, safetensors headers), runs/<variant>/infer/ (run.json,
compare.json), runs/<variant>/fidelity.json, runs/bench.json. Writes
models/<model>/reports/report-<variant>.md (+ a per-layer error PNG) and reports/index.md. A
stage that has not run gets a section that says so and gives the command that runs it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from vlmquant.checkpoint.headers import read_json, summarize
from vlmquant.core.config import setting
from vlmquant.core.errors import BadInput
from vlmquant.core.markdown import table_cell
from vlmquant.core.outputs import check_apart, check_output, writable_folder, write_text_atomic

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
    check_vllm: bool = setting(
        True,
        "for a variant without a recorded check-vllm verdict, check it now against the "
        "installed vLLM (labelled as not recorded)",
    )


def _load(path: Path, needs: tuple[str, ...] = ()) -> Any | None:
    """A recorded result (a JSON object with the keys `needs`), None if absent; an unreadable
    or malformed one is bad input naming the file."""
    if not path.is_file():
        return None
    data = read_json(path)
    if not isinstance(data, dict) or any(k not in data for k in needs):
        raise BadInput(
            f"{path}: not the result this report reads (a JSON object with "
            f"{', '.join(needs) or 'fields'}); rerun the stage that wrote it"
        )
    return data


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
        config = _load(path / "config.json") or {}
        src = config.get("vlmquant_source")
        if isinstance(src, dict):
            return [
                f"- language model: {src.get('language_model', '?')} "
                f"(licence: {src.get('license', '?')})",
                f"- **{src.get('vision_tower', 'vision tower: not recorded')}**",
                "",
            ]
    return []


def calibration(run: dict[str, Any]) -> list[str]:
    calib = Path(run["config"]["calib"])
    manifest = _load(calib.with_suffix(".manifest.json")) or {}
    c = run["calibration"]
    src = manifest.get("source", {})
    return [
        f"- file: `{calib}` (sha256 `{run['inputs']['calib'].get('sha256', '?')}`)",
        f"- source: {src.get('kind', '?')} `{src.get('path', '?')}`"
        + (" — **synthetic**" if src.get("synthetic") else ""),
        f"- set: {manifest.get('counts', {}).get('selected', '?')} captions, seed "
        f"{manifest.get('seed', '?')}; used {c['samples']} x <= {c['max_seq']} tokens "
        f"({c['mode']}, batch {c['batch_size']})",
        "",
    ]


def ptq(run: dict[str, Any]) -> list[str]:
    cfg, v = run["config"], run["versions"]
    return [
        f"- qformat {cfg['qformat']}, KV cache {cfg['kv_cache_qformat']}, scope "
        f"{cfg['scope']}, algorithm {run['calibration']['algorithm']}",
        f"- nvidia-modelopt {v.get('nvidia-modelopt')}, torch {v.get('torch')}, "
        f"transformers {v.get('transformers')} on {run.get('device_name', run['device'])}",
        "- time (s): " + ", ".join(f"{k} {t}" for k, t in run["timings_s"].items()),
        "- peak memory: " + ", ".join(f"{k} {m}" for k, m in run["memory"].items()),
        f"- fused-scale unification: {run['fused_scales']}",
        *budget_lines(run.get("kld_budget")),
        "",
    ]


def budget_lines(choice: dict[str, Any] | None) -> list[str]:
    """The --kld-budget choice: every unit kept BF16 with the measured cost that put it there."""
    if not choice:
        return []
    m = choice["measured"]
    lines = [
        f"- KLD budget {choice['budget']:g}: {'met' if choice['met'] else 'MISSED'} — measured "
        f"{m['kld_mean']:.4f} (predicted {choice['predicted_kld']:.4f}) on {m['tokens']} tokens; "
        f"{choice['share_of_saving_kept']:.0%} of the whole export's weight-bytes saving kept; "
        f"KV cache {'FP8' if choice['kv_cache_fp8'] else 'BF16 (its FP8 capacity given up)'}",
    ]
    for k in choice["kept_bf16"]:
        lines.append(
            f"  - kept BF16: `{k['unit']}`, cost KLD {k['cost']:.4g} with only it in FP8, "
            f"{k['weight_bytes_saved'] / 2**20:.2f} MiB it would have saved"
        )
    return lines


def scheme(run: dict[str, Any], pmap: dict[str, Any] | None) -> list[str]:
    lines = ["Quant-config rules in the order ModelOpt applies them (later entries win):", ""]
    for i, e in enumerate(run["quant_cfg"]["quant_cfg"], 1):
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
    for name, m in pmap["modules"].items():
        groups[(re.sub(r"\.\d+\.", ".N.", name), m["precision"], m["rule"])] += 1
    lines += [
        "",
        "Resulting precision, grouped (`N` = every layer/block index):",
        "",
        "| count | modules | precision | decided by |",
        "|---|---|---|---|",
    ]
    for (pattern, prec, rule), n in sorted(groups.items()):
        lines.append(f"| {n} | `{pattern}` | {prec} | {table_cell(rule, 70)} |")
    kv = pmap.get("kv_cache_scales_exported", {})
    lines += [
        "",
        f"KV cache: {len(kv)} scale tensors (k_scale/v_scale)"
        + (", FP8" if kv else ", none exported"),
        "",
        "Full per-module table: [precision_map.json](PRECISION_MAP)",
        "",
    ]
    return lines


def _relpath(target: Path, start: Path) -> str:
    import os

    return os.path.relpath(target, start)


def inference(infer_dir: Path, report_dir: Path) -> list[str]:
    run, cmp = _load(infer_dir / "run.json"), _load(infer_dir / "compare.json")
    r = run["result"]
    lines = [
        f"- vLLM {r['vllm_version']}, quantization {r['used'].get('quantization')}, KV "
        f"cache {r['used'].get('kv_cache_dtype')}, load {r['load_s']} s, "
        f"{r['tokens_per_s']} output tok/s",
        f"- sampling: {json.dumps(r['sampling'])}",
        "",
    ]
    rel = Path(_relpath(infer_dir, report_dir))
    if cmp:
        lines += [
            f"Greedy tokens identical to BF16 for {cmp['identical']} of {cmp['prompts']} prompts.",
            "",
            "| # | prompt | image | BF16 | FP8 | same |",
            "|---|---|---|---|---|---|",
        ]
        for c in cmp["rows"]:
            n = c["sample"]
            lines.append(
                f"| [{n}]({rel / f'sample_{n:02d}.txt'}) | {table_cell(c['prompt'], 50)} "
                f"| {c['image'] or ''} | {table_cell(c['base_response'], 60)} "
                f"| {table_cell(c['model_response'], 60)} "
                f"| {'yes' if c['tokens_match'] else 'no'} |"
            )
    else:
        lines += ["| # | prompt | image | response |", "|---|---|---|---|"]
        for line in (infer_dir / "samples.jsonl").read_text().splitlines():
            row = json.loads(line)
            n = row["sample"]
            lines.append(
                f"| [{n}]({rel / f'sample_{n:02d}.txt'}) | {table_cell(row['text'], 50)} "
                f"| {row['image'] or ''} | {table_cell(row['response'])} |"
            )
    return lines + [""]


def layer_plot(fid: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(fid["layers"])
    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.bar(
        range(len(names)),
        [fid["layers"][n]["activation_error"] for n in names],
        label="activation error",
    )
    ax.plot(
        range(len(names)),
        [fid["layers"][n]["weight_error"] for n in names],
        "k.",
        label="weight error",
    )
    ax.set_xlabel("FP8 linear (checkpoint order)")
    ax.set_ylabel("relative error")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def fidelity(fid: dict[str, Any], png_name: str) -> list[str]:
    cols = ("tokens", "ppl_ratio", "kld_mean", "kld_p99", "kld_max", "top1_agreement")
    lines = [
        "From the exported artifact through an FP8 emulation that follows the "
        f"{fid.get('emulated_kernels', 'cuda')} build of vLLM's arithmetic "
        "(vlmquant.eval.emulate).",
        "",
        "| inputs | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for group, g in fid["groups"].items():
        lines.append(
            f"| {group} | "
            + " | ".join(
                f"{g[c]:.4g}" if isinstance(g.get(c), float) else str(g.get(c, "")) for c in cols
            )
            + " |"
        )
    lines += ["", "| worst layers | activation error | weight error |", "|---|---|---|"]
    lines += [
        f"| {w['module']} | {w['activation_error']:.4f} | {w['weight_error']:.4f} |"
        for w in fid["worst_layers"]
    ]
    v = fid["vllm"]
    lines += [
        "",
        "vLLM check: "
        + (
            v.get("skipped")
            or f"vLLM {v['vllm_version']}: PPL ratio {v['ppl_ratio']:.4f}, top-1 base vs FP8 "
            f"{v['top1_agreement_base_vs_quant']:.3f}, emulation vs vLLM "
            f"{v['top1_agreement_emulation_vs_vllm']:.3f}"
        ),
        "",
    ]
    if fid["layers"]:
        lines += [f"![per-layer error]({png_name})", ""]
    return lines


def for_variant(bench: dict[str, Any], variant: str) -> dict[str, Any]:
    """The part of a bench.json about `variant` and its baseline (one file may hold several
    variants; `x_vlm` is not `x`)."""
    base = {Path(r["model"]).name for r in bench["results"] if r["model_index"] == 0}
    return {
        **bench,
        "results": [r for r in bench["results"] if Path(r["model"]).name in base | {variant}],
        "ratios": {k: v for k, v in bench["ratios"].items() if k.split(" / ", 1)[0] == variant},
    }


def performance(bench: dict[str, Any], variant: str) -> list[str]:
    bench = for_variant(bench, variant)
    lines = [
        f"On {bench['card']}:",
        "",
        "| model [mode] | single-stream tok/s | of roofline | KV cache tokens |",
        "|---|---|---|---|",
    ]
    for r in bench["results"]:
        lines.append(
            f"| {Path(r['model']).name} [{r['mode']}] "
            f"| {r['single_stream']['tok_s']:.1f} | {100 * r['roofline_fraction']:.0f}% "
            f"| {r['kv_cache_tokens']} |"
        )
    for key, entry in bench["ratios"].items():
        lines.append("")
        lines.append(
            f"{key}: single stream {entry['single_stream_tok_s']:.2f}x"
            + (
                f", KV capacity {entry['kv_cache_tokens']:.2f}x"
                if "kv_cache_tokens" in entry
                else ""
            )
        )
    from vlmquant.bench.render import goal_table

    goals = goal_table(bench)
    return lines + (["", "Speed goals:", "", *goals] if goals else []) + [""]


def compatibility(variant: Path, live: bool) -> list[str]:
    """The check-vllm verdict quantize recorded with the export (check_vllm.json); without
    one, a live check against the installed vLLM when `live`, labelled as such."""
    import importlib.util

    from vlmquant.checkpoint import check_vllm

    recorded = _load(variant / "check_vllm.json", ("ok", "findings", "vllm_version"))
    if recorded is not None:
        return [
            "Recorded by quantize when it wrote the export:",
            "",
            "```",
            check_vllm.render(recorded),
            "```",
            "",
        ]
    if not live:
        return not_run(
            "No check-vllm verdict recorded with the export.", f"vlmquant check-vllm {variant}"
        )
    if importlib.util.find_spec("vllm") is None:
        return not_run("vLLM is not importable here.", f"vlmquant check-vllm {variant}")
    verdict = check_vllm.check(variant)
    return [
        "Not recorded with the export: checked now, while rendering this report, against the "
        "installed vLLM:",
        "",
        "```",
        check_vllm.render(verdict),
        "```",
        "",
    ]


def reproduce(runs: list[dict[str, Any] | None]) -> list[str]:
    lines = []
    for r in filter(None, runs):
        argv = ["vlmquant", *r["command"][1:]]  # argv[0] is wherever the script was installed
        lines.append(f"- {r['stage']} (git {r['git_revision']}): `{' '.join(argv)}`")
    return lines + [""]


def render_variant(
    root: Path,
    base: Path | None,
    variant: Path,
    report_dir: Path,
    do_check: bool,
    plot_dir: Path | None = None,
) -> tuple[str, dict[str, Any]]:
    """The variant's page (links relative to `report_dir`) and its index row; its plot is
    written to `plot_dir` (default `report_dir`)."""
    name = variant.name
    run = _load(variant / "run.json", ("config", "size"))
    pmap = _load(variant / "precision_map.json", ("modules",))
    runs = root / "runs" / name
    # in suggested commands: the checkpoint the variant was made from, when it is not here
    base_arg = base or (run or {}).get("config", {}).get("model") or "BASE_CHECKPOINT"
    fid = _load(runs / "fidelity.json")
    bench = _load(root / "runs" / "bench.json")
    infer_dir = runs / "infer"
    png = f"report-{name}-layers.png"
    out = {s: [] for s in SECTIONS}
    out["Models and sizes"] = sizes(base, variant)
    out["Calibration dataset"] = calibration(run)
    out["PTQ settings"] = ptq(run)
    out["Mixed-precision scheme"] = [
        line.replace("PRECISION_MAP", _relpath(variant / "precision_map.json", report_dir))
        for line in scheme(run, pmap)
    ]
    out["vLLM inference test"] = (
        inference(infer_dir, report_dir)
        if (infer_dir / "run.json").is_file()
        else not_run(
            "No vLLM samples recorded.",
            f"vlmquant infer --model {variant} --compare {base_arg} --out-dir {infer_dir}",
        )
    )
    if fid:
        layer_plot(fid, (plot_dir or report_dir) / png)
        out["Fidelity"] = fidelity(fid, png)
    else:
        out["Fidelity"] = not_run(
            "No fidelity measured.",
            f"vlmquant eval --base {base_arg} --quantized {variant} --out {runs / 'fidelity.json'}",
        )
    out["Performance"] = (
        performance(bench, name)
        if bench
        else not_run(
            "No benchmark recorded (it needs a GPU).",
            f"vlmquant bench --model {base_arg} --model {variant} "
            f"--out {root / 'runs' / 'bench.json'}",
        )
    )
    out["vLLM compatibility"] = compatibility(variant, do_check)
    infer_run = _load(infer_dir / "run.json")
    out["Reproduce"] = reproduce([run, infer_run, fid["run"] if fid else None])
    lines = [
        f"# {root.name} — {name}",
        "",
        "Generated by `vlmquant report` from the recorded runs; do not edit by hand.",
        "",
    ]
    for section in SECTIONS:
        lines += [f"## {section}", "", *out[section]]
    t = (fid or {}).get("groups", {}).get("text", {})
    speed = next(
        (
            e["single_stream_tok_s"]
            for k, e in (bench or {}).get("ratios", {}).items()
            if k.startswith(name)
        ),
        None,
    )
    headline = {
        "size_gib": summarize(variant)["safetensors_gib"],
        "ppl_ratio": t.get("ppl_ratio"),
        "kld_mean": t.get("kld_mean"),
        "top1": t.get("top1_agreement"),
        "speedup": speed,
    }
    return "\n".join(lines), headline


def base_of(variant: Path, bases: list[Path]) -> Path | None:
    """The checkpoint the variant was quantized from (its run.json's --model) when it is one of
    the model's checkpoints; with no record of its source, the only checkpoint there; else none
    (not a guess)."""
    model = (_load(variant / "run.json") or {}).get("config", {}).get("model")
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
            text, head = render_variant(
                root, base_of(variant, bases), variant, report_dir, cfg.check_vllm, staging
            )
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
            f"| [{path.name}]({_relpath(path, index_path.parent)}) |"
        )
    return "\n".join(lines) + "\n"
