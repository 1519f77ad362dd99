"""parity's renderer: parity.json files (`vlmquant parity`) as one results page, under
`vlmquant report --results`.

One row per run: the model, device, calibration settings, the batch each side used, the tensors
compared and how many were bit-identical, the config verdict; then every tensor that differed.
Every number comes from the JSON files.
"""

from __future__ import annotations

import json
from pathlib import Path

from vlmquant.core.markdown import table_cell
from vlmquant.results.runs import ParityRun


def _row(name: str, r: ParityRun) -> str:
    c, d = r.config, r.diff
    t = d.tensors
    configs = "equal" if not any(d.configs.values()) else "differ"
    return (
        f"| {name} | {Path(c['model']).name} | {r.device} | {c['kv_cache_qformat']} | "
        f"{c['calib_size']} x <= {c['calib_seq']} | {c['batch_size'] or 'auto'} | "
        f"{r.batch_size['hf_ptq']} / {r.batch_size['vlmquant']} | {t.compared} | "
        f"{t.bit_identical} | {len(t.only_in_a) + len(t.only_in_b)} | {configs} | "
        f"{'identical' if d.identical else 'different'} | "
        f"{r.timings_s['hf_ptq']:.1f} / {r.timings_s['vlmquant_quantize']:.1f} |"
    )


def render(title: str, files: list[Path]) -> str:
    runs = [(f.stem.removeprefix("parity_"), ParityRun.read(f)) for f in files]
    first = runs[0][1]
    v = first.versions
    lines = [
        f"# {title}",
        "",
        "Upstream ModelOpt `hf_ptq.py`, run unchanged (`vlmquant parity`, which also runs "
        "`vlmquant quantize --no-unify-fused-scales` on the same model, calibration `.jsonl` and "
        "settings), compared tensor by tensor by stored bytes (`inspect --diff`).",
        "",
        f"- versions: torch {v.get('torch')}, transformers {v.get('transformers')}, "
        f"nvidia-modelopt {v.get('nvidia-modelopt')}, vllm {v.get('vllm')}, "
        f"python {v.get('python')}",
        f"- hf_ptq.py sha256: {first.inputs['hf_ptq']['sha256']}",
        f"- code: {first.git_revision}",
        "- command: `" + " ".join(["vlmquant", *first.command[1:]]) + "`"
        " (per run: the model, `--batch-size` and `--out` change)",
        "",
        "| run | model | device | KV | calibration | --batch-size | batch used (hf_ptq / "
        "ours) | tensors | bit-identical | in one only | configs | verdict | time s (hf_ptq / "
        "ours) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *(_row(name, r) for name, r in runs),
    ]
    changed = [(name, c) for name, r in runs for c in r.diff.tensors.changed]
    lines += ["", "## Tensors that differ", ""]
    if not changed:
        lines.append("None: every tensor of every run is bit-identical.")
    else:
        lines += ["| run | tensor | change |", "|---|---|---|"]
        lines += [f"| {n} | {c['name']} | {table_cell(json.dumps(c), 200)} |" for n, c in changed]
    return "\n".join(lines) + "\n"
