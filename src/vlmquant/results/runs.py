"""Run records as results embed them, and the run.json each stage writes beside its output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from vlmquant.core.typed import Result


@dataclass
class Host:
    platform: str
    machine: str
    cpus: int | None = None  # not recorded before session 13
    gpus: list[str] | None = None


def machine_text(m) -> str:
    """Where a run ran, from a record with `gpus`, `platform` and `cpus` (a Host, a Machine):
    the CUDA GPUs it saw, or CPU only; a record before `gpus` existed says so."""
    cpus = f", {m.cpus} CPUs" if m.cpus else ""
    if m.gpus is None:
        return f"not recorded (a run record before host.gpus existed; {m.platform}{cpus})"
    if not m.gpus:
        return f"CPU only, no CUDA GPU visible ({m.platform}{cpus})"
    return f"{', '.join(m.gpus)} ({m.platform}{cpus})"


@dataclass
class Run:
    """A run record as a result embeds it (`RunRecord.data()` without stage extras)."""

    stage: str
    command: list[str]
    config: dict[str, Any]
    inputs: dict[str, Any]
    versions: dict[str, str]
    git_revision: str | None
    host: Host
    started: str
    timings_s: dict[str, float]
    memory: dict[str, Any]


# run.json of the stages whose run record others read (its config and inputs, plus the stage's
# own facts); quantize's and infer's are in results.quantize and results.infer


@dataclass
class TensorChanges:
    compared: int
    bit_identical: int
    only_in_a: list[str]
    only_in_b: list[str]
    changed: list[dict[str, Any]]  # name, kind, and per kind: a/b, elements, max_abs_diff ...


@dataclass
class CheckpointDiff:
    a: str
    b: str
    identical: bool
    tensors: TensorChanges
    configs: dict[str, list[dict[str, Any]]]  # per config file: the keys that differ


@dataclass
class ParityRun(Run, Result):
    KIND: ClassVar[str] = "parity-run"
    VERSION: ClassVar[int] = 1
    WRITER: ClassVar[str] = "vlmquant parity"

    device: str
    hf_ptq_folder: str
    batch_size: dict[str, int | None]  # hf_ptq's and vlmquant's calibration batch
    diff: CheckpointDiff


@dataclass
class Probe:
    text: str
    max_abs_logit_diff_bf16: float


@dataclass
class MakeTinyRun(Run, Result):
    KIND: ClassVar[str] = "make-tiny-run"
    VERSION: ClassVar[int] = 1
    WRITER: ClassVar[str] = "vlmquant make-tiny"

    parameters: int
    gguf_sha256: str | None = None  # with --lm: the trained model it holds
    source: dict[str, str] | None = None
    probe: Probe | None = None
