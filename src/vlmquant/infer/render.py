"""infer's renderer: a results page for a GPU infer run (check-vllm verdicts, infer runs),
under `vlmquant report --results`, and a variant report's "vLLM inference test" section.

A results folder holds what scripts/gpu/stages_3b.sh writes: `environment.txt`,
`check_vllm_<name>.json` per checkpoint and `infer_<name>/` per infer run (run.json, samples,
compare.json when the run had --compare). Every number comes from those files, read through
their types (`results.infer`, `results.check`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from vlmquant.core.markdown import counts_text, notes, table_cell
from vlmquant.core.typed import plain, read_rows
from vlmquant.results.check import Verdict
from vlmquant.results.infer import Compare, EngineRun, InferRun, SampleRow


def _engine_row(label: str, res: EngineRun) -> str:
    used = res.used
    blocks, size = used.num_gpu_blocks, used.block_size
    methods = counts_text(used.layer_methods or {})
    wb = used.weight_bytes
    return (
        f"| {label} | `{Path(res.model).name}` | {used.quantization or 'none'} "
        f"| {used.kv_cache_dtype} | {res.load_s:.1f} "
        f"| {wb / 2**30 if wb else float('nan'):.3f} | {blocks} x {size} = "
        f"{blocks * size if blocks and size else 'n/a'} | {res.output_tokens} "
        f"| {res.tokens_per_s or float('nan'):.1f} | {table_cell(methods, 200)} |"
    )


def samples(run_dir: Path) -> list[SampleRow]:
    return read_rows(SampleRow, run_dir / "samples.jsonl", "vlmquant infer")


def render(results: Path, title: str) -> str:
    env = (results / "environment.txt").read_text().strip().splitlines()
    lines = [f"# {title}", "", *notes(results)]
    lines += ["- card, memory, driver: " + env[0], "- " + env[1]]
    runs = sorted(p for p in results.glob("infer_*") if (p / "run.json").is_file())
    if runs:
        first = InferRun.read(runs[0] / "run.json")
        cfg = first.config
        lines += [
            f"- code: {first.git_revision}",
            f"- engine options: max_model_len {cfg['max_model_len']}, enforce_eager "
            f"{cfg['enforce_eager']}, gpu_memory_utilization {cfg['gpu_memory_utilization']}; "
            f"greedy, max_tokens {cfg['max_tokens']}",
        ]
    lines += [
        "",
        "## check-vllm (static contract check against the installed vLLM)",
        "",
        "| checkpoint | vLLM | verdict | tensors checked | findings |",
        "|---|---|---|---|---|",
    ]
    for f in sorted(results.glob("check_vllm_*.json")):
        v = Verdict.read(f)
        found = [f"{x.severity} {x.rule}: {', '.join(x.tensors)}" for x in v.findings]
        findings = "; ".join(found) or "none"
        lines.append(
            f"| `{f.stem.removeprefix('check_vllm_')}` | {v.vllm_version} ({v.vllm_build}) "
            f"| {'pass' if v.ok else 'FAIL'} | {v.tensors_checked} "
            f"| {table_cell(findings, 200)} |"
        )
    lines += [
        "",
        "## Engines",
        "",
        "Weights = every parameter and buffer as vLLM loaded them; KV cache = blocks x block "
        "size = tokens; tok/s = output tokens over the whole suite's generate time (prompts run "
        "one by one).",
        "",
        "| run | checkpoint | quantization | KV cache dtype | load s | weights GiB "
        "| KV cache tokens | output tokens | tok/s | linear methods used |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run_dir in runs:
        r = InferRun.read(run_dir / "run.json")
        lines.append(_engine_row(run_dir.name, r.result))
        if r.base_result is not None:
            lines.append(_engine_row(f"{run_dir.name} (--compare base)", r.base_result))
    for run_dir in runs:
        written = sorted(run_dir.glob("sample_*.txt"))
        rows = samples(run_dir)
        lines += [
            "",
            f"## {run_dir.name}: {len(written)} samples written",
            "",
            "| # | prompt | image | prompt tokens | output tokens | finish | response |",
            "|---|---|---|---|---|---|---|",
        ]
        for s in rows:
            lines.append(
                f"| {s.sample} | {table_cell(s.text, 60)} | {s.image or ''} "
                f"| {s.prompt_tokens} | {len(s.token_ids)} | {s.finish_reason} "
                f"| {table_cell(s.response, 80)} |"
            )
        if (run_dir / "compare.json").is_file():
            c = Compare.read(run_dir / "compare.json")
            lines += [
                "",
                f"Against the BF16 base: greedy tokens identical for {c.identical} of "
                f"{c.prompts} prompts; first differing token per prompt: "
                + ", ".join(
                    "same" if x.tokens_match else str(x.first_differing_token) for x in c.rows
                )
                + ".",
            ]
    return "\n".join(lines) + "\n"


def report_section(infer_dir: Path, report_dir: Path) -> list[str]:
    """A variant report's inference section from infer's run folder (links relative to the
    report's folder)."""
    r = InferRun.read(infer_dir / "run.json").result
    lines = [
        f"- vLLM {r.vllm_version}, quantization {r.used.quantization}, KV cache "
        f"{r.used.kv_cache_dtype}, load {r.load_s} s, {r.tokens_per_s} output tok/s",
        f"- sampling: {json.dumps(r.sampling)}",
        "",
    ]
    rel = Path(os.path.relpath(infer_dir, report_dir))
    if (infer_dir / "compare.json").is_file():
        cmp = Compare.read(infer_dir / "compare.json")
        lines += [
            f"Greedy tokens identical to BF16 for {cmp.identical} of {cmp.prompts} prompts.",
            "",
            "| # | prompt | image | BF16 | FP8 | same |",
            "|---|---|---|---|---|---|",
        ]
        for c in cmp.rows:
            lines.append(
                f"| [{c.sample}]({rel / f'sample_{c.sample:02d}.txt'}) "
                f"| {table_cell(c.prompt, 50)} | {c.image or ''} "
                f"| {table_cell(c.base_response, 60)} | {table_cell(c.model_response, 60)} "
                f"| {'yes' if c.tokens_match else 'no'} |"
            )
    else:
        lines += ["| # | prompt | image | response |", "|---|---|---|---|"]
        for row in samples(infer_dir):
            lines.append(
                f"| [{row.sample}]({rel / f'sample_{row.sample:02d}.txt'}) "
                f"| {table_cell(row.text, 50)} | {row.image or ''} | {table_cell(row.response)} |"
            )
    return lines + [""]


def compare_page(run_dir: Path) -> str:
    """A recorded run's compare.md from its compare.json and run.json: what `infer --compare`
    writes; a run record older than host.gpus takes the card from environment.txt beside the
    run folder, and says so."""
    from vlmquant.infer.compare import compare_markdown
    from vlmquant.results.runs import machine_text

    host = InferRun.read(run_dir / "run.json").host
    machine = machine_text(host)
    env = run_dir.parent / "environment.txt"
    if host.gpus is None and env.is_file():
        card = env.read_text(encoding="utf-8").split("\n", 1)[0].split(",")[0].strip()
        machine = f"{card} (from environment.txt beside this run: its record predates host.gpus)"
    return compare_markdown(plain(Compare.read(run_dir / "compare.json")), machine)
