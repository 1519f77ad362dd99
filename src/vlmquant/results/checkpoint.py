"""`vlmquant inspect --json`: a checkpoint's sizes, dtypes and per-module precision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from vlmquant.core.typed import Result


@dataclass
class ModuleGroup:
    pattern: str  # `N` for every layer / block index
    dtype: str
    count: int


@dataclass
class Inspect(Result):
    KIND: ClassVar[str] = "inspect"
    VERSION: ClassVar[int] = 1
    WRITER: ClassVar[str] = "vlmquant inspect --json CHECKPOINT"

    path: str
    format: str
    safetensors_bytes: int
    safetensors_gib: float
    tensor_count: int
    by_dtype: dict[str, dict[str, int]]
    scale_tensors: dict[str, int]
    modules_by_precision: dict[str, int]
    module_groups: list[ModuleGroup]
    modules: dict[str, str]
    quantization: dict[str, Any] | None
