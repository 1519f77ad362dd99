"""Inspect a checkpoint from its safetensors headers (no weights are loaded), or compare two.

    vlmquant inspect models/qwen2_5_vl_3b_instruct/quantized/fp8_fp8_coco2017 [--json]
    vlmquant inspect A --diff B [--json]      tensor by tensor, configs key by key

Prints the total size, size by dtype, tensor counts, the per-module precision read back from
the files (grouped, `model.layers.N.*`), the quantization config, and the "Models and Sizes"
table row (format, GiB). `--json` prints the same as JSON for machines. With `--diff OTHER`:
tensors only in one, dtype/shape changes, bytes that differ (elements, max |diff|, the ratio of
every scale), config keys that differ, and a verdict (identical or different).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from vlmquant.checkpoint.diff import diff_checkpoints, render_diff
from vlmquant.checkpoint.headers import require_checkpoint, summarize
from vlmquant.core.config import setting


@dataclasses.dataclass
class InspectConfig:
    checkpoint: Path = setting(Path("."), "checkpoint folder to inspect", positional=True)
    diff: Path | None = setting(None, "compare with this checkpoint, tensor by tensor")
    json: bool = setting(False, "print JSON instead of text")


def render(s: dict) -> str:
    lines = [
        f"checkpoint: {s['path']}",
        f"format:     {s['format']}",
        f"size:       {s['safetensors_gib']:.3f} GiB ({s['safetensors_bytes']:,} bytes), "
        f"{s['tensor_count']} tensors",
        "",
        "by dtype:",
    ]
    for dtype, d in s["by_dtype"].items():
        lines.append(f"  {dtype:<8} {d['tensors']:>6} tensors  {d['bytes'] / 2**30:8.3f} GiB")
    if s["scale_tensors"]:
        lines.append(
            "scale tensors: " + ", ".join(f"{k} {v}" for k, v in s["scale_tensors"].items())
        )
    lines += ["", "module precision (as stored):"]
    for g in s["module_groups"]:
        lines.append(f"  {g['count']:>4} x {g['pattern']:<55} {g['dtype']}")
    if s["quantization"]:
        lines += ["", "quantization: " + json.dumps(s["quantization"])]
    lines += [
        "",
        "| Model | Format | Size (GiB) |",
        "|---|---|---|",
        f"| {Path(s['path']).name} | {s['format']} | {s['safetensors_gib']:.2f} |",
    ]
    return "\n".join(lines)


def run(cfg: InspectConfig) -> Path:
    # the checkpoint contract every stage applies: inspect describes nothing they would refuse
    # (an FP8 export whose config lost its quantization record read "BF16", exit 0)
    from vlmquant.checkpoint.contract import check_checkpoint

    require_checkpoint(cfg.checkpoint)
    check_checkpoint(cfg.checkpoint, "inspect")
    if cfg.diff is not None:
        require_checkpoint(cfg.diff, "--diff")
        check_checkpoint(cfg.diff, "--diff")
        d = diff_checkpoints(cfg.checkpoint, cfg.diff)
        print(json.dumps(d, indent=2) if cfg.json else render_diff(d))
        return cfg.checkpoint
    summary = summarize(cfg.checkpoint)
    from vlmquant.results.checkpoint import Inspect

    print(Inspect.dumps(summary).rstrip() if cfg.json else render(summary))
    return cfg.checkpoint
