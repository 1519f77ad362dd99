"""Benchmark checkpoints side by side in vLLM: decode speed, concurrency, KV capacity, and how
close single-stream decode gets to the memory-bandwidth roofline.

    vlmquant bench --model models/.../checkpoints/Qwen2.5-VL-3B-Instruct \\
        --model models/.../quantized/fp8_fp8_coco2017 --out docs/results/bench.json

For each model and mode (`default`: vLLM's torch.compile + CUDA graphs; `eager`), in each of
--engine-starts fresh engine processes (pages show the median and the min-max over them):
single-stream decode (prompt 128, 256 output tokens, ignore_eos), a matrix of concurrencies x
(input, output) lengths (output and total tokens/s, time to first token, time
per output token), one image-prompt prefill (a drawn image of --image-size pixels, one pixel
changed per request so that vLLM's encoder cache cannot answer it), weight bytes as loaded,
KV-cache capacity in tokens, and the GEMM and attention kernels vLLM picked per layer. The
roofline: device-to-device copy bandwidth measured in the same run, divided by the bytes one
decode step must read (the language model's weights as stored: FP8 linears, BF16 norms and
lm_head). The first --model is the baseline for the ratios. Results as JSON; `vlmquant report
--results FOLDER` renders its page beside it (which also says which speed goals are met).

`--serve`: each model behind vLLM's OpenAI-compatible server instead, driven by vLLM's own
`vllm bench serve` over --engine-starts fresh servers (see `vlmquant.bench.serve_bench`):

    vlmquant bench --serve --model BF16_DIR --model FP8_DIR --out docs/results/serve-h200.json

A result is written whole when the run ends; while it runs, what it measured so far sits in
`.<name>.partial` beside it, and a previous result stays in place until the new one is done.
`--resume` continues a run that was cut short (a time limit, a lost machine): with the same
settings it keeps every engine start the cut run finished and runs the others.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from vlmquant.bench.checks import validate
from vlmquant.bench.facts import card_name, copy_bandwidth, decode_bytes, ratios
from vlmquant.bench.measure import SCOPES_ENV
from vlmquant.bench.spread import merge_starts
from vlmquant.bench.work import finish, partial_path, start_work
from vlmquant.core.config import setting
from vlmquant.core.outputs import write_text_atomic
from vlmquant.core.runinfo import RunRecord
from vlmquant.results.bench import BenchResult, ServeResult


@dataclasses.dataclass
class BenchConfig:
    model: list[Path] = setting(
        [], "checkpoint folder; repeat for side by side (first = baseline)", required=True
    )
    out: Path | None = setting(None, "JSON file to write", required=True)
    modes: list[str] = setting(
        ["default", "eager"], "default (torch.compile + CUDA graphs) and/or eager"
    )
    single_stream: list[int] = setting(
        [128, 256], "single-stream prompt and output lengths", low=1, repeats=True
    )
    concurrency: list[int] = setting([1, 8, 64, 256], "concurrent requests", low=1)
    shapes: list[str] = setting(["128x256", "512x256", "2048x128"], "input x output lengths")
    repeats: int = setting(3, "repeats of the single-stream and image cases", low=1)
    matrix_repeats: int = setting(1, "repeats of each concurrency case", low=1)
    matrix: bool = setting(True, "run the concurrency x shapes matrix (--no-matrix: skip it)")
    engine_arg: list[str] = setting(
        [],
        "extra vLLM LLM() argument KEY=VALUE (VALUE as JSON, else a string), repeatable; e.g. "
        "async_scheduling=true; recorded in the mode label",
    )
    engine_env: list[str] = setting(
        [],
        "environment variable KEY=VALUE for the engine process, repeatable; e.g. "
        "VLLM_DISABLED_KERNELS=FlashInferFP8ScaledMMLinearKernel; recorded in the mode label",
    )
    profile_steps: int = setting(
        0,
        "also profile this many single-stream decode steps per engine (torch profiler, GPU "
        "time by kernel category vs wall time; CUDA only; 0 = off)",
        low=0,
    )
    image: str | None = setting(
        "red_circle", "image for the image-prefill case: a drawn-image name or a file ('' to skip)"
    )
    image_size: int = setting(
        448,
        "side in pixels of a drawn image (448: 1,024 patches through the vision tower, 256 "
        "language-model tokens; at most 4096: Qwen2.5-VL's processor shrinks anything larger)",
        low=28,
        high=4096,
    )
    gpu_memory_utilization: float | None = setting(
        None,
        "vLLM GPU memory share (same for all models, so KV capacity compares)",
        low=0.01,
        high=1,
    )
    max_model_len: int = setting(4096, "vLLM max model length", low=1)
    tensor_parallel_size: int = setting(1, "vLLM tensor parallel size (GPUs)", low=1)
    serve: bool = setting(False, "benchmark behind `vllm serve` with `vllm bench serve`")
    engine_starts: int = setting(
        3,
        "fresh engines (offline) or servers (--serve) per model and mode; the spread needs >= 3",
        low=1,
    )
    serve_shape: str = setting("512x256", "--serve: random text INPUTxOUTPUT tokens")
    serve_prompts: int = setting(
        4, "--serve: requests per unit of concurrency (>= 16 a level)", low=1
    )
    image_sizes: list[int] = setting(
        [448, 896, 1344],
        "--serve: square image sides for the image-TTFT runs (none: skip)",
        low=28,
        high=4096,
    )
    image_requests: int = setting(8, "--serve: image requests per size", low=1)
    timeout: float = setting(1800.0, "seconds one engine (start and runs) may take", low=1)
    force: bool = setting(False, "replace an existing output file")
    resume: bool = setting(
        False,
        "continue a run that was cut short (same --out and settings): the engine starts it "
        "finished are kept, the rest run (offline bench only)",
    )


# LLM() arguments bench sets from its own flags
def run(cfg: BenchConfig) -> Path:
    checked = validate(cfg)
    device, shapes = checked.device, checked.shapes
    from vlmquant.engine.args import engine_kwargs
    from vlmquant.engine.worker import run_worker

    record = RunRecord("bench", cfg)
    with record.timed("bandwidth"):
        bandwidth = copy_bandwidth(device)
    print(f"bench: copy bandwidth {bandwidth / 1e9:.0f} GB/s on {device}", flush=True)
    work = cfg.out.parent / f".{cfg.out.stem}-work"
    if cfg.serve:
        return run_serve(cfg, device, bandwidth, record, work)
    reuse = start_work(cfg, work)
    results: list[dict[str, Any]] = []
    card = card_name(device)

    def save(complete: bool) -> None:
        # written after every engine, so a run cut short still leaves what it measured
        data = {
            "device": device,
            "card": card,
            "copy_bandwidth_bytes_s": bandwidth,
            "complete": complete,
            "results": results,
            "ratios": ratios(results),
            "run": record.data(),
        }
        write_text_atomic(cfg.out if complete else partial_path(cfg.out), BenchResult.dumps(data))

    extra, extra_env = checked.engine_args, checked.engine_env
    suffix = "".join(f", {k}={json.dumps(v)}" for k, v in extra.items()) + "".join(
        f", {k}={v}" for k, v in extra_env.items()
    )
    for i, model in enumerate(cfg.model):
        need = decode_bytes(model)
        for base_mode in cfg.modes:
            mode = base_mode + suffix
            print(f"bench: {model} [{mode}] ...", flush=True)
            engine = engine_kwargs(
                model,
                max_model_len=cfg.max_model_len,
                enforce_eager=base_mode == "eager",
                gpu_memory_utilization=cfg.gpu_memory_utilization,
                tensor_parallel_size=cfg.tensor_parallel_size,
            )
            engine["enable_prefix_caching"] = False
            engine.update(extra)
            spec = {
                "task": "vlmquant.bench.measure:run_bench",
                "engine": engine,
                "bench": {
                    "single_stream": cfg.single_stream,
                    "shapes": shapes if cfg.matrix else [],
                    "concurrency": cfg.concurrency,
                    "profile_steps": cfg.profile_steps,
                    "repeats": cfg.repeats,
                    "matrix_repeats": cfg.matrix_repeats,
                    "image": cfg.image or None,
                    "image_size": cfg.image_size,
                },
            }
            # the profiler must share a process with the engine core to see its kernels
            env = dict(extra_env)
            if cfg.profile_steps:
                env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
                env[SCOPES_ENV] = "1"  # vLLM's model-runner scopes, for the image profile
            starts = []
            for s in range(cfg.engine_starts):
                if cfg.engine_starts > 1:
                    print(f"bench: start {s + 1}/{cfg.engine_starts}", flush=True)
                where = work / f"{i}_{base_mode}_{s}"
                done = reuse(where, spec)
                if done is not None:
                    print(f"bench: start {s + 1} kept from the run cut short", flush=True)
                    starts.append(done)
                    continue
                with record.timed(f"{model.name}:{mode}:{s}"):
                    starts.append(run_worker(spec, where, timeout=cfg.timeout, env=env))
            r = merge_starts(starts)
            roofline = bandwidth / need["total"]
            r.update(
                model_index=i,
                mode=mode,
                decode_bytes=need,
                roofline_tok_s=roofline,
                roofline_fraction=r["single_stream"]["tok_s"] / roofline,
            )
            results.append(r)
            print(
                f"bench: {model.name} [{mode}] single stream "
                f"{r['single_stream']['tok_s']:.1f} tok/s = "
                f"{100 * r['roofline_fraction']:.0f}% of roofline {roofline:.0f}",
                flush=True,
            )
            save(complete=False)
    save(complete=True)
    finish(cfg.out, work)
    return cfg.out


def run_serve(cfg: BenchConfig, device: str, bandwidth: float, record, work: Path) -> Path:
    from vlmquant.bench.serve_bench import run_serve_bench

    def save(models: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> None:
        data = {
            "mode": "serve",
            "device": device,
            "card": card_name(device),
            "copy_bandwidth_bytes_s": bandwidth,
            "engine_starts": cfg.engine_starts,
            "complete": extra is not None,
            "models": models,
            **(extra or {}),
            "run": record.data(),
        }
        write_text_atomic(cfg.out if extra else partial_path(cfg.out), ServeResult.dumps(data))

    with record.timed("serve"):
        result = run_serve_bench(cfg, work, save)
    save(result["models"], {"image_ttft_ratio": result["image_ttft_ratio"]})
    finish(cfg.out, work)
    return cfg.out
