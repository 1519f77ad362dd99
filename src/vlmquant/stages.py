"""The stage registry: each `vlmquant` subcommand, the module that runs it and its settings
class. The CLI builds its parser from it; the pipeline finds a recipe table's stage in it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str
    module: str  # module with the settings class and `run(cfg)`
    settings: str
    summary: str


STAGES = [
    Stage(
        "make-tiny",
        "vlmquant.tiny.make_tiny_stage",
        "MakeTinyConfig",
        "build the embedded tiny Qwen2.5-VL (random, seeded) or the 3B shape",
    ),
    Stage(
        "calib",
        "vlmquant.calib.calib_stage",
        "CalibConfig",
        "build the calibration set from COCO captions, an HF dataset on disk, or --demo",
    ),
    Stage(
        "quantize",
        "vlmquant.quantize.quantize_stage",
        "QuantizeConfig",
        "FP8 PTQ with ModelOpt (hf_ptq semantics) and a vLLM-ready export",
    ),
    Stage(
        "sensitivity",
        "vlmquant.sensitivity.sensitivity_stage",
        "SensitivityConfig",
        "fidelity cost (KLD) of each quantizable unit, for quantize --kld-budget",
    ),
    Stage(
        "infer",
        "vlmquant.infer.infer_stage",
        "InferConfig",
        "run a checkpoint in vLLM on the prompt suite; --compare runs its BF16 base too",
    ),
    Stage(
        "serve",
        "vlmquant.serve.serve_stage",
        "ServeConfig",
        "serve a checkpoint behind vLLM's OpenAI-compatible server (vllm serve), Ctrl-C stops",
    ),
    Stage(
        "eval",
        "vlmquant.eval.eval_stage",
        "EvalConfig",
        "fidelity: PPL, KLD, top-1 agreement, per-layer error from the FP8 artifact; vLLM check",
    ),
    Stage(
        "bench",
        "vlmquant.bench.bench_stage",
        "BenchConfig",
        "serving speed side by side in vLLM: decode, concurrency, KV capacity, roofline",
    ),
    Stage(
        "report",
        "vlmquant.report.report_stage",
        "ReportConfig",
        "markdown reports per variant + reports/index.md, rendered from the recorded runs",
    ),
    Stage(
        "pipeline",
        "vlmquant.pipeline.pipeline_stage",
        "PipelineConfig",
        "run a recipe's stages in order, skipping those whose outputs are current",
    ),
    Stage(
        "inspect",
        "vlmquant.checkpoint.inspect_stage",
        "InspectConfig",
        "size, dtypes and per-module precision of a checkpoint, read from its headers",
    ),
    Stage(
        "parity",
        "vlmquant.parity.parity_stage",
        "ParityConfig",
        "run upstream hf_ptq.py unchanged and quantize on the same inputs; diff the exports",
    ),
    Stage(
        "check-vllm",
        "vlmquant.checkpoint.check_vllm_stage",
        "CheckVllmConfig",
        "check a checkpoint against the installed vLLM's loader rules (no engine)",
    ),
]
