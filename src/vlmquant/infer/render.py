"""Render a GPU infer run (check-vllm verdicts, infer run.json files) as one markdown page.

    vlmquant report --results FOLDER   (renders this page, see vlmquant.report.results)

RESULTS_DIR holds what scripts/gpu/stages_3b.sh writes: `environment.txt`,
`check_vllm_<name>.json` per checkpoint and `infer_<name>/` per infer run (run.json, samples,
compare.json when the run had --compare). Every number comes from those files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlmquant.core.markdown import counts_text, notes, table_cell


def _engine_row(label: str, res: dict[str, Any]) -> str:
    used = res["used"]
    blocks, size = used.get("num_gpu_blocks"), used.get("block_size")
    methods = counts_text(used.get("layer_methods", {}))
    wb = used.get("weight_bytes")
    return (
        f"| {label} | `{Path(res['model']).name}` | {used.get('quantization') or 'none'} "
        f"| {used.get('kv_cache_dtype')} | {res['load_s']:.1f} "
        f"| {wb / 2**30 if wb else float('nan'):.3f} | {blocks} x {size} = "
        f"{blocks * size if blocks and size else 'n/a'} | {res.get('output_tokens', 'n/a')} "
        f"| {res.get('tokens_per_s') or float('nan'):.1f} | {table_cell(methods, 200)} |"
    )


def render(results: Path, title: str) -> str:
    env = (results / "environment.txt").read_text().strip().splitlines()
    lines = [f"# {title}", "", *notes(results)]
    lines += ["- card, memory, driver: " + env[0], "- " + env[1]]
    runs = sorted(p for p in results.glob("infer_*") if (p / "run.json").is_file())
    if runs:
        first = json.loads((runs[0] / "run.json").read_text())
        cfg = first["config"]
        lines += [
            f"- code: {first['git_revision']}",
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
        v = json.loads(f.read_text())
        found = [f"{x['severity']} {x['rule']}: {', '.join(x['tensors'])}" for x in v["findings"]]
        findings = "; ".join(found) or "none"
        lines.append(
            f"| `{f.stem.removeprefix('check_vllm_')}` | {v['vllm_version']} ({v['vllm_build']}) "
            f"| {'pass' if v['ok'] else 'FAIL'} | {v['tensors_checked']} "
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
        r = json.loads((run_dir / "run.json").read_text())
        lines.append(_engine_row(run_dir.name, r["result"]))
        if "base_result" in r:
            lines.append(_engine_row(f"{run_dir.name} (--compare base)", r["base_result"]))
    for run_dir in runs:
        samples = sorted(run_dir.glob("sample_*.txt"))
        rows = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
        lines += [
            "",
            f"## {run_dir.name}: {len(samples)} samples written",
            "",
            "| # | prompt | image | prompt tokens | output tokens | finish | response |",
            "|---|---|---|---|---|---|---|",
        ]
        for s in rows:
            lines.append(
                f"| {s['sample']} | {table_cell(s['text'], 60)} | {s['image'] or ''} "
                f"| {s['prompt_tokens']} | {len(s['token_ids'])} | {s['finish_reason']} "
                f"| {table_cell(s['response'], 80)} |"
            )
        if (run_dir / "compare.json").is_file():
            c = json.loads((run_dir / "compare.json").read_text())
            lines += [
                "",
                f"Against the BF16 base: greedy tokens identical for {c['identical']} of "
                f"{c['prompts']} prompts; first differing token per prompt: "
                + ", ".join(
                    "same" if x["tokens_match"] else str(x["first_differing_token"])
                    for x in c["rows"]
                )
                + ".",
            ]
    return "\n".join(lines) + "\n"
