"""What quantize writes beside an export: run.json, precision_map.json and, with --kld-budget,
kld_budget.json."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from vlmquant.core.typed import Result
from vlmquant.results.runs import Run

Scale = float | dict[str, float] | None  # per tensor: the value; per channel: count, min, max


@dataclass
class KeptUnit:
    unit: str
    cost: float  # KLD with only this unit in FP8 (from the sensitivity file)
    weight_bytes_saved: int  # what quantizing it would have saved
    gain: float | None = None  # a layer's KV cache: what keeping it BF16 gains in the export


@dataclass
class Measured:
    """The export's fidelity as eval measured it on the sensitivity file's text set."""

    tokens: int
    kld_mean: float
    top1_agreement: float
    kld_p99: float | None = None
    kld_mean_ci95: list[float] | None = None


@dataclass
class BudgetRound:
    """One export of `quantize --kld-budget` (a miss makes another, up to --budget-rounds)."""

    aim: float  # the predicted KLD the chooser kept units for (the budget, lowered by a miss)
    predicted_kld: float
    measured_kld: float
    units_bf16: int
    share_of_saving_kept: float
    met: bool
    kv_cache_bf16_layers: list[int] = field(default_factory=list)


@dataclass
class BudgetChoice(Result):
    KIND: ClassVar[str] = "kld-budget"
    VERSION: ClassVar[int] = 1
    WRITER: ClassVar[str] = "vlmquant quantize --kld-budget X --sensitivity FILE"

    budget: float
    whole_export_kld: float
    predicted_kld: float
    kept_bf16: list[KeptUnit]
    kv_cache_fp8: bool
    weight_bytes_saved: int
    weight_bytes_saved_by_whole_export: int
    share_of_saving_kept: float
    measured: Measured | None = None  # after the export is measured
    kv_cache_bf16_layers: list[int] = field(default_factory=list)  # vLLM's skip layers
    kv_cache_bytes_vs_fp8: float | None = None  # KV bytes per token against all-FP8
    met: bool | None = None
    aim: float | None = None  # the predicted KLD aimed at (below the budget after a miss)
    rounds: list[BudgetRound] = field(default_factory=list)  # every export made, in order


@dataclass
class ModulePrecision:
    precision: str
    activations: str
    rule: str  # the quant_cfg entry (or fact) that decided it
    weight_scale: Scale
    input_scale: Scale
    stored: str | None = None  # the dtype in the files (after export)
    weight_scale_exported: Scale = None
    input_scale_exported: Scale = None
    kept_bf16_by: str | None = None  # the --kld-budget unit and its cost


@dataclass
class PrecisionMap(Result):
    KIND: ClassVar[str] = "precision-map"
    VERSION: ClassVar[int] = 1
    WRITER: ClassVar[str] = "vlmquant quantize"

    counts: dict[str, int]
    modules: dict[str, ModulePrecision]
    kv_cache_scales: dict[str, Scale]
    quant_cfg: list[dict[str, Any]]
    kv_cache_scales_exported: dict[str, Scale] = field(default_factory=dict)
    kld_budget: BudgetChoice | None = None
    # decoder layer -> what keeps its KV cache BF16 at run time (vLLM's
    # --kv-cache-dtype-skip-layers; its calibrated scales stay in the files)
    kv_cache_bf16_layers: dict[str, str] = field(default_factory=dict)


@dataclass
class Calibration:
    mode: str
    samples: int
    batch_size: int
    batches: int
    max_seq: int
    algorithm: str | dict[str, Any] | None
    padding: str | None = None  # not recorded before session 13


@dataclass
class Size:
    format: str
    safetensors_bytes: int
    safetensors_gib: float
    by_dtype: dict[str, dict[str, int]]
    scale_tensors: dict[str, int]


@dataclass
class CheckSummary:
    ok: bool
    vllm_version: str
    vllm_build: str
    tensors_checked: int


@dataclass
class QuantizeRun(Run, Result):
    KIND: ClassVar[str] = "quantize-run"
    VERSION: ClassVar[int] = 1
    WRITER: ClassVar[str] = "vlmquant quantize"

    device: str
    device_name: str
    calibration: Calibration
    quant_cfg: dict[str, Any]  # ModelOpt's config as passed to mtq.quantize
    outside_language_model: list[str]
    fused_scales: dict[str, Any]
    precision_counts: dict[str, int]
    size: Size
    placement: dict[str, Any] | None = None
    source_identity: dict[str, str] | None = None
    kld_budget: BudgetChoice | None = None
    check_vllm: CheckSummary | str | None = None  # check_vllm.json's gist, or why none ran
