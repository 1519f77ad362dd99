"""The bench's results, typed: the offline bench (`bench-*.json`) and the serving bench
(`serve-*.json`), as their pages, the report and the recipe comparison read them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from vlmquant.core.typed import Result
from vlmquant.results.engine import EngineFacts
from vlmquant.results.runs import Run


@dataclass
class Timing:
    """Seconds: the median, extremes and count of the timed requests; over several engine
    starts the median of the starts' medians, with each start's median in `starts`."""

    median: float
    min: float
    max: float
    n: int
    starts: list[float] | None = None


@dataclass
class Case:
    """One load point: `concurrency` requests of `input_len` -> `output_len` tokens."""

    concurrency: int
    input_len: int
    output_len: int
    output_tok_s: float
    total_tok_s: float
    ttft_s: Timing
    tpot_s: Timing
    wall_s: Timing
    tok_s: float | None = None  # single stream: 1 / median TPOT
    tok_s_starts: list[float] | None = None
    output_tok_s_starts: list[float] | None = None
    total_tok_s_starts: list[float] | None = None


@dataclass
class ImageProfile:
    prompt_tokens: int
    image: dict[str, Any]  # the profiler's kernel and scope tables, read by the profile page
    text_same_len: dict[str, Any]


@dataclass
class BenchModel:
    """One checkpoint in one engine mode, merged over its engine starts."""

    model: str
    mode: str
    model_index: int
    engine: dict[str, Any]  # the engine arguments, as passed to vLLM
    vllm_version: str
    used: EngineFacts
    load_s: float
    weight_bytes_loaded: int
    kv_cache_tokens: int
    single_stream: Case
    matrix: list[Case]
    decode_bytes: dict[str, int]
    roofline_tok_s: float
    roofline_fraction: float
    engine_starts: int | None = None  # one start, before session 10
    load_s_starts: list[float] | None = None
    kv_cache_tokens_starts: list[int] | None = None
    image_prompt_tokens: int | None = None
    image_prefill_s: Timing | None = None
    text_prefill_same_len_s: Timing | None = None
    profile: dict[str, Any] | None = None  # the decode profile's tables (bench --profile-steps)
    image_profile: ImageProfile | None = None
    image_profile_starts: list[ImageProfile] | None = None

    @property
    def label(self) -> str:
        """`<checkpoint folder> [<mode>]`, as tables name an engine."""
        return f"{self.model.rstrip('/').rsplit('/', 1)[-1]} [{self.mode}]"


@dataclass
class BenchResult(Result):
    KIND: ClassVar[str] = "bench"
    VERSION: ClassVar[int] = 1
    WRITER: ClassVar[str] = "vlmquant bench"

    device: str
    card: str
    copy_bandwidth_bytes_s: float
    complete: bool
    results: list[BenchModel]
    ratios: dict[str, dict[str, float]]  # "<model> / <base> (<mode>)" -> metric -> ratio
    run: Run


@dataclass
class ServeModel:
    model: str
    mode: str
    starts: list[dict[str, Any]]  # each start's command, startup and `vllm bench serve` rows
    summary: dict[str, Any]  # per level and metric: median and min-max over the starts


@dataclass
class ServeResult(Result):
    KIND: ClassVar[str] = "serve-bench"
    VERSION: ClassVar[int] = 1
    WRITER: ClassVar[str] = "vlmquant bench --serve"

    mode: str
    device: str
    card: str
    copy_bandwidth_bytes_s: float
    engine_starts: int
    complete: bool
    models: list[ServeModel]
    run: Run
    image_ttft_ratio: dict[str, dict[str, float]] | None = None  # written when complete
