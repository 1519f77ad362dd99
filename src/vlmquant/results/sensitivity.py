"""`vlmquant sensitivity --out sens.json`: each quantizable unit's measured fidelity cost, as
`quantize --kld-budget` and the recipe pages read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from vlmquant.core.typed import Result
from vlmquant.results.runs import Run


@dataclass
class Score:
    kld_mean: float
    top1_agreement: float


@dataclass
class Recipe:
    """What the measured export was: its formats, calibration and ModelOpt quantization."""

    qformat: str
    kv_cache_qformat: str
    calib: str | None
    calib_size: int
    quantization: dict[str, Any] | None  # hf_quant_config.json's "quantization"
    calib_samples: int | None = None  # not recorded before session 14


@dataclass
class SensitivitySet:
    text_samples: int
    tokens: int
    seq_len: int
    user_text: str | None
    held_out_from: str | None


@dataclass
class UnitCost:
    unit: str
    modules: list[str]
    fp8_params: int
    weight_bytes_saved: int
    cost: float  # KLD mean with only this unit in FP8
    top1_agreement: float


@dataclass
class KvLayerCost:
    layer: int
    cost: float  # KLD mean with only this layer's KV cache in FP8
    top1_agreement: float  # of that alone
    gain: float  # export's KLD less its KLD with this layer's KV cache BF16


@dataclass
class Sensitivity(Result):
    KIND: ClassVar[str] = "sensitivity"
    VERSION: ClassVar[int] = 1
    WRITER: ClassVar[str] = "vlmquant sensitivity"

    base: str
    base_identity: dict[str, str]
    export: str
    recipe: Recipe
    measure: str
    emulated_kernels: str
    eval_set: SensitivitySet
    whole_export: Score
    linears_fp8_kv_bf16: Score
    sum_of_unit_costs: float
    additivity: float | None
    units: list[UnitCost]
    run: Run
    kv_layers: list[KvLayerCost] = field(default_factory=list)  # none before session 19
