"""The eval's result (`vlmquant eval --out X.json`): what its page, the report, the recipe
comparison and the budget check read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from vlmquant.core.typed import Result
from vlmquant.results.engine import EngineFacts
from vlmquant.results.runs import Run


@dataclass
class Clear:
    """Top-1 agreement at the positions whose top-2 margin is at least `margin_nats`."""

    margin_nats: float
    positions: int
    agreement: float | None  # None: no clear position


@dataclass
class Bootstrap:
    resamples: int
    unit: str
    seed: int


@dataclass
class PerSample:
    fields: list[str]
    rows: list[list[float]]


@dataclass
class Group:
    """One group's token statistics (text or image+text); only `tokens` when it is empty."""

    tokens: int
    nll_base: float | None = None
    nll_quant: float | None = None
    ppl_base: float | None = None
    ppl_quant: float | None = None
    ppl_ratio: float | None = None
    kld_mean: float | None = None
    kld_median: float | None = None
    kld_p99: float | None = None
    kld_max: float | None = None
    top1_agreement: float | None = None
    samples: int | None = None
    kld_mean_ci95: list[float] | None = None
    ppl_ratio_ci95: list[float] | None = None
    bootstrap: Bootstrap | None = None
    per_sample: PerSample | None = None


@dataclass
class EvalSet:
    text_samples: int
    image_text_samples: int
    held_out_from: str | None
    user_text: str | None


@dataclass
class LayerError:
    weight_error: float
    activation_error: float


@dataclass
class WorstLayer(LayerError):
    module: str


@dataclass
class NoiseFloor:
    nudge: float
    positions: int
    top1_agreement: float
    top1_agreement_clear: Clear


@dataclass
class Vllm:
    """The same text scored by vLLM, or why it was not (`skipped`)."""

    skipped: str | None = None
    vllm_version: str | None = None
    used: dict[str, EngineFacts] | None = None
    tokens: int | None = None
    nll_base: float | None = None
    nll_quant: float | None = None
    ppl_ratio: float | None = None
    top1_agreement_base_vs_quant: float | None = None
    top1_agreement_emulation_vs_vllm: float | None = None
    top1_agreement_emulation_vs_vllm_clear: Clear | None = None
    note: str | None = None
    per_sample: PerSample | None = None  # not recorded before session 17


@dataclass
class EvalResult(Result):
    KIND: ClassVar[str] = "eval"
    VERSION: ClassVar[int] = 1
    WRITER: ClassVar[str] = "vlmquant eval"

    base: str
    quantized: str
    quantized_is_fp8: bool
    emulated_kernels: str
    eval_set: EvalSet
    groups: dict[str, Group]
    layers: dict[str, LayerError]
    worst_layers: list[WorstLayer]
    vllm: Vllm
    run: Run
    emulation_noise_floor: NoiseFloor | None = None  # not measured before session 14
    kv_cache_dtype: str = "auto"  # the quantized model's KV cache (eval --kv-cache-dtype)
    kv_cache_bf16_layers: list[int] = field(default_factory=list)  # kept BF16 (the export's)
