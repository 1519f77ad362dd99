"""check-vllm's verdict (`check-vllm --json`, and check_vllm.json beside every export)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from vlmquant.core.typed import Result


@dataclass
class Finding:
    rule: str
    severity: Literal["error", "warning"]
    message: str
    fix: str
    tensors: list[str]


@dataclass
class Verdict(Result):
    KIND: ClassVar[str] = "check-vllm"
    VERSION: ClassVar[int] = 1
    WRITER: ClassVar[str] = "vlmquant check-vllm CHECKPOINT --json"

    checkpoint: str
    architecture: str
    vllm_version: str
    vllm_build: Literal["cpu", "gpu"]
    ok: bool
    tensors_checked: int
    findings: list[Finding]
