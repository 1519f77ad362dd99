"""A recipe comparison (`recipes-*.json`): per recipe, its export's size and format beside the
fidelity eval measured on it, and the decode speed benches measured for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from vlmquant.core.typed import Result
from vlmquant.results.eval import EvalSet, Group, Vllm
from vlmquant.results.quantize import BudgetChoice, Calibration


@dataclass
class Fidelity:
    base: str
    eval_set: EvalSet
    text: Group


@dataclass
class Machine:
    gpus: list[str]
    cpus: int | None
    platform: str


@dataclass
class RecipeRow:
    recipe: str
    export: str
    quant_algo: str
    kv_cache_quant_algo: str | None
    exclude_modules: list[str]
    safetensors_bytes: int
    by_dtype: dict[str, dict[str, int]]
    calibration: Calibration
    kld_budget: BudgetChoice | None
    fidelity: Fidelity
    base_safetensors_bytes: int
    emulated_kernels: str | None
    vllm: Vllm
    versions: dict[str, str]
    git_revision: str | None
    measured_on: Machine
    calib_sha256: str | None = None  # not recorded before session 14
    kv_cache_dtype: str = "auto"  # the KV cache the eval ran (auto: the export's own)
    kv_cache_bf16_layers: list[int] = field(default_factory=list)  # of an FP8 KV cache

    @property
    def kv_cache(self) -> str | None:
        """The FP8 KV cache it runs (the export's format, or a runtime one) and the layers it
        keeps BF16, None for BF16."""
        kv = self.kv_cache_quant_algo if self.kv_cache_dtype == "auto" else self.kv_cache_dtype
        if kv and self.kv_cache_bf16_layers:
            n = len(self.kv_cache_bf16_layers)
            kv += f" (layer{'s' * (n > 1)} {', '.join(map(str, self.kv_cache_bf16_layers))} BF16)"
        return kv


@dataclass
class SpeedRow:
    single_stream_tok_s: float
    c256_output_tok_s: float | None
    engine_starts: int
    bench: str


@dataclass
class RecipeSpeed(SpeedRow):
    also: list[SpeedRow] = field(default_factory=list)  # the same recipe in later benches


@dataclass
class SpeedSource:
    bench: str
    card: str
    versions: dict[str, str]
    complete: bool


@dataclass
class Speed:
    sources: list[SpeedSource]
    by_recipe: dict[str, RecipeSpeed]


@dataclass
class Recipes(Result):
    KIND: ClassVar[str] = "recipes"
    VERSION: ClassVar[int] = 1
    WRITER: ClassVar[str] = "python -m vlmquant.eval.compare collect"

    recipes: list[RecipeRow]
    speed: Speed | None = None
