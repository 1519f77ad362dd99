"""What infer writes: run.json (the engine's summary), compare.json with --compare, and one
samples.jsonl row per prompt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from vlmquant.core.typed import Result
from vlmquant.results.engine import EngineFacts
from vlmquant.results.runs import Run


@dataclass
class EngineRun:
    """One engine's generation over the prompts."""

    model: str
    used: EngineFacts
    load_s: float
    generate_s: float
    output_tokens: int
    tokens_per_s: float


@dataclass
class InferSummary(EngineRun):
    engine: dict[str, Any]  # the engine arguments, as passed to vLLM
    sampling: dict[str, Any]
    vllm_version: str
    prompt_tokens: int | None = None  # not recorded before session 12


@dataclass
class CompareSummary:
    base: str
    identical: int
    prompts: int


@dataclass
class InferRun(Run, Result):
    KIND: ClassVar[str] = "infer-run"
    VERSION: ClassVar[int] = 1
    WRITER: ClassVar[str] = "vlmquant infer"

    result: InferSummary
    check_vllm: str
    compare: CompareSummary | None = None
    base_result: EngineRun | None = None


@dataclass
class CompareRow:
    sample: int
    prompt: str
    image: str | None
    base_response: str
    model_response: str
    tokens_match: bool
    first_differing_token: int | None
    base_tokens: int
    model_tokens: int


@dataclass
class Compare(Result):
    KIND: ClassVar[str] = "infer-compare"
    VERSION: ClassVar[int] = 1
    WRITER: ClassVar[str] = "vlmquant infer --compare BASE"

    model: str
    base: str
    identical: int
    prompts: int
    rows: list[CompareRow]


@dataclass
class Sample:
    text: str
    image: str | None
    response: str
    token_ids: list[int]
    prompt_tokens: int
    finish_reason: str | None


@dataclass
class Generation(Result):
    """The engine worker's whole answer for infer's prompts (what a GPU script records)."""

    KIND: ClassVar[str] = "generation"
    VERSION: ClassVar[int] = 1
    WRITER: ClassVar[str] = "bash scripts/gpu/quantize_3b.sh"

    model: str
    engine: dict[str, Any]
    sampling: dict[str, Any]
    vllm_version: str
    used: EngineFacts
    load_s: float
    generate_s: float
    output_tokens: int
    tokens_per_s: float
    results: list[Sample]


@dataclass
class SampleRow(Sample):
    """One line of samples.jsonl."""

    sample: int
