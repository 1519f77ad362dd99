"""vlmquant check-vllm: check a checkpoint against the installed vLLM's loader rules and print the
verdict (the rules and the check are in checkpoint.check_vllm).

    vlmquant check-vllm models/qwen2_5_vl_3b_instruct/quantized/fp8_fp8_coco2017_vlm [--json]

Exit 0 when the checkpoint passes (warnings allowed), 2 when it fails."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from vlmquant.checkpoint.check_vllm import check, failure_line, render
from vlmquant.core.config import setting
from vlmquant.core.errors import BadInput


@dataclasses.dataclass
class CheckVllmConfig:
    checkpoint: Path = setting(Path("."), "checkpoint folder to check", positional=True)
    json: bool = setting(False, "print the verdict as JSON")
    tensor_parallel_size: int = setting(
        1,
        "also check the heads split over this many GPUs as vLLM's tensor parallelism needs",
        low=1,
    )


def run(cfg: CheckVllmConfig) -> Path:
    verdict = check(cfg.checkpoint, cfg.tensor_parallel_size)
    print(verdict.text().rstrip() if cfg.json else render(verdict))
    if not verdict.ok:
        raise BadInput(failure_line(verdict))
    return cfg.checkpoint
