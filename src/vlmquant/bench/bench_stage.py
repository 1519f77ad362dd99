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
import time
from pathlib import Path
from typing import Any

from vlmquant.bench.measure import SCOPES_ENV
from vlmquant.bench.spread import merge_starts
from vlmquant.checkpoint.headers import tensors
from vlmquant.core.config import setting
from vlmquant.core.errors import BadInput
from vlmquant.core.outputs import check_apart, check_output, write_text_atomic
from vlmquant.core.runinfo import RunRecord
from vlmquant.prompts import drawable
from vlmquant.results.bench import BenchResult, ServeResult


@dataclasses.dataclass
class BenchConfig:
    model: list[Path] = setting([], "checkpoint folder; repeat for side by side (first = baseline)")
    out: Path | None = setting(None, "JSON file to write")
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
BENCH_OWN = {
    "model": "--model",
    "max_model_len": "--max-model-len",
    "enforce_eager": "--modes",
    "tensor_parallel_size": "--tensor-parallel-size",
    "gpu_memory_utilization": "--gpu-memory-utilization",
}


def parse_shapes(shapes: list[str]) -> list[tuple[int, int]]:
    out = []
    for s in shapes:
        try:
            inp, outp = (int(x) for x in s.lower().split("x"))
        except ValueError:
            raise BadInput(f"--shapes {s}: use INPUTxOUTPUT, e.g. 512x256") from None
        if inp < 1 or outp < 1:
            raise BadInput(f"--shapes {s}: input and output lengths must be at least 1")
        if (inp, outp) in out:  # 16x8 and 16X8: one shape, benchmarked twice
            raise BadInput(f"--shapes {' '.join(shapes)}: {s} is given twice; give each once")
        out.append((inp, outp))
    return out


def copy_bandwidth(device: str, nbytes: int = 1 << 30, repeats: int = 10) -> float:
    """Device-to-device copy, bytes read + written per second (the roofline's numerator)."""
    import torch

    src = torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device).fill_(1)
    dst = torch.empty_like(src)
    dst.copy_(src)
    if device == "cuda":
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            dst.copy_(src)
        end.record()
        torch.cuda.synchronize()
        seconds = start.elapsed_time(end) / 1000
    else:
        t0 = time.perf_counter()
        for _ in range(repeats):
            dst.copy_(src)
        seconds = time.perf_counter() - t0
    del src, dst
    return 2 * nbytes * repeats / seconds


def decode_bytes(checkpoint: Path) -> dict[str, int]:
    """Bytes one decode step reads: every language-model tensor as stored, plus lm_head (or the
    tied embedding matrix). The embedding lookup reads one row and is left out."""
    infos = tensors(checkpoint)
    names = {t.name for t in infos}
    lm = sum(
        t.nbytes
        for t in infos
        if t.name.startswith(
            (
                "model.layers.",
                "model.norm.",
                "model.language_model.layers.",
                "model.language_model.norm.",
            )
        )
    )
    head = [t for t in infos if t.name == "lm_head.weight"] or [
        t for t in infos if t.name.endswith("embed_tokens.weight") and "lm_head.weight" not in names
    ]
    return {
        "language_model": lm,
        "lm_head": sum(t.nbytes for t in head),
        "total": lm + sum(t.nbytes for t in head),
    }


def parse_pairs(items: list[str], flag: str, as_json: bool) -> dict[str, Any]:
    """KEY=VALUE items; VALUE parsed as JSON where `as_json` and it parses, else kept a string."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise BadInput(f"{flag} {item}: use KEY=VALUE, e.g. {flag} NAME=1")
        if key in out:
            raise BadInput(f"{flag} {item}: {key} is given twice; give each key once")
        out[key] = value
        if as_json:
            try:
                out[key] = json.loads(value)
            except json.JSONDecodeError:
                pass
    return out


@dataclasses.dataclass
class Checked:
    """What validate() parsed from the settings, so run() parses nothing twice."""

    device: str
    shapes: list[tuple[int, int]]
    engine_args: dict[str, Any]
    engine_env: dict[str, Any]


def validate(cfg: BenchConfig) -> Checked:
    if not cfg.model or cfg.out is None:
        raise BadInput("bench: pass at least one --model DIR and --out FILE.json")
    from vlmquant.checkpoint.contract import check_checkpoint
    from vlmquant.engine.args import check_engine_can_run

    for m in cfg.model:
        check_checkpoint(m, "--model")
        check_engine_can_run(m, cfg.tensor_parallel_size, cfg.max_model_len)
    bad = [m for m in cfg.modes if m not in ("default", "eager")]
    if bad or not cfg.modes:
        raise BadInput(f"--modes {' '.join(cfg.modes)}: use default and/or eager")
    if len(cfg.single_stream) != 2:
        raise BadInput(
            f"--single-stream {' '.join(map(str, cfg.single_stream))}: give two numbers, the "
            "input and output tokens of the decode case (e.g. --single-stream 128 256)"
        )
    if any(c < 1 for c in cfg.concurrency) or cfg.repeats < 1:
        raise BadInput("--concurrency values and --repeats must be >= 1")
    if cfg.matrix and not (cfg.concurrency and cfg.shapes):
        raise BadInput(
            "--concurrency and --shapes need at least one value each (or pass --no-matrix)"
        )
    shapes = parse_shapes(cfg.shapes)
    engine_args = parse_pairs(cfg.engine_arg, "--engine-arg", as_json=True)
    from vlmquant.engine.args import check_not_overridden

    check_not_overridden(list(engine_args), "--engine-arg", BENCH_OWN)
    engine_env = parse_pairs(cfg.engine_env, "--engine-env", as_json=False)
    if cfg.profile_steps < 0:
        raise BadInput("--profile-steps must be >= 0")
    if cfg.image and not (drawable(cfg.image) or Path(cfg.image).is_file()):
        raise BadInput(
            f"--image {cfg.image}: neither a drawable name (e.g. red_circle) nor a file; "
            "pass one, or '' to skip the image case"
        )
    if cfg.image and not drawable(cfg.image):
        from vlmquant.prompts import check_image_file

        check_image_file(Path(cfg.image), "--image")
    if cfg.image_size < 28:
        raise BadInput(f"--image-size {cfg.image_size}: use at least 28 (one merged patch)")
    check_fits(cfg, shapes)
    if cfg.serve:
        validate_serve(cfg)
        if cfg.resume:
            raise BadInput("--resume continues an offline bench; drop it with --serve")
    for m in cfg.model:
        check_apart(cfg.out, {"--model": m})
    check_output(cfg.out, cfg.force, kind="file", suffix=".json", stage="bench")
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.profile_steps and device != "cuda":
        raise BadInput("--profile-steps profiles CUDA kernels: it needs a CUDA GPU (drop it here)")
    return Checked(device, shapes, engine_args, engine_env)


def ratios(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Each later model against the first, per mode: the headline ratios."""
    out: dict[str, Any] = {}
    base = {(r["mode"]): r for r in results if r["model_index"] == 0}
    for r in results:
        b = base.get(r["mode"])
        if r["model_index"] == 0 or b is None:
            continue
        key = f"{Path(r['model']).name} / {Path(b['model']).name} ({r['mode']})"
        entry = {"single_stream_tok_s": r["single_stream"]["tok_s"] / b["single_stream"]["tok_s"]}
        if r.get("kv_cache_tokens") and b.get("kv_cache_tokens"):
            entry["kv_cache_tokens"] = r["kv_cache_tokens"] / b["kv_cache_tokens"]
        if "image_prefill_s" in r and "image_prefill_s" in b:
            entry["image_prefill_speedup"] = (
                b["image_prefill_s"]["median"] / r["image_prefill_s"]["median"]
            )
        for mr, mb in zip(r["matrix"], b["matrix"], strict=True):
            entry[f"c{mr['concurrency']} {mr['input_len']}->{mr['output_len']} output_tok_s"] = (
                mr["output_tok_s"] / mb["output_tok_s"]
            )
        out[key] = entry
    return out


def check_fits(cfg: BenchConfig, shapes: list[tuple[int, int]]) -> None:
    """vLLM refuses a request whose prompt and output exceed --max-model-len, after an engine
    start: refuse it before."""
    if cfg.serve:  # a serving bench runs its own shape only
        cases = [("--serve-shape", "{}x{}", parse_shapes([cfg.serve_shape])[0])]
    else:
        cases = [("--single-stream", "{} {}", tuple(cfg.single_stream))]
        cases += [("--shapes", "{}x{}", shape) for shape in shapes if cfg.matrix]
    for flag, form, (inp, outp) in cases:
        if inp + outp > cfg.max_model_len:
            raise BadInput(
                f"{flag} {form.format(inp, outp)}: {inp + outp} tokens, above --max-model-len "
                f"{cfg.max_model_len}; raise --max-model-len to at least {inp + outp} or "
                "shorten the case"
            )


def validate_serve(cfg: BenchConfig) -> None:
    if "serve" not in cfg.out.name:
        raise BadInput(
            f"--out {cfg.out}: a serving benchmark's file name contains 'serve' "
            "(e.g. serve-h200.json), so pages and readers tell it from an offline one"
        )
    if cfg.engine_starts < 1 or cfg.serve_prompts < 1 or cfg.image_requests < 1:
        raise BadInput("--engine-starts, --serve-prompts and --image-requests must be >= 1")
    parse_shapes([cfg.serve_shape])
    if any(size < 28 for size in cfg.image_sizes):
        raise BadInput(f"--image-sizes {cfg.image_sizes}: use at least 28 pixels a side")


def partial_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.partial")


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


# settings that do not change what a run measures: a resumed run may differ in them
NOT_MEASURED = ("force", "resume", "timeout")


def start_work(cfg: BenchConfig, work: Path):
    """Prepare the run's work folder and return `reuse(folder, spec)`: a finished engine
    start's result when resuming a run of the same settings, else None. A fresh run starts
    from an empty work folder; `--resume` needs the cut run's, with the same settings."""
    import shutil

    from vlmquant.core.config import to_jsonable
    from vlmquant.engine.worker import complete_json

    settings = {k: v for k, v in to_jsonable(cfg).items() if k not in NOT_MEASURED}
    record = work / "settings.json"
    if not cfg.resume:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        record.write_text(json.dumps(settings, indent=2))
        return lambda where, spec: None
    if not complete_json(record):
        raise BadInput(
            f"--resume: no run of --out {cfg.out} was cut short here ({work} is missing); "
            "drop --resume"
        )
    before = json.loads(record.read_text())
    differ = sorted(k for k in settings.keys() | before.keys() if settings.get(k) != before.get(k))
    if differ:
        raise BadInput(
            f"--resume: the cut run of --out {cfg.out} had other settings ({', '.join(differ)}); "
            "give the same ones, or drop --resume"
        )

    def reuse(where: Path, spec: dict[str, Any]) -> dict[str, Any] | None:
        result, asked = where / "engine_result.json", where / "engine_spec.json"
        if not (complete_json(result) and complete_json(asked)):
            return None
        if json.loads(asked.read_text()) != json.loads(json.dumps(spec)):
            return None
        return json.loads(result.read_text())

    return reuse


def finish(out: Path, work: Path) -> None:
    import shutil

    partial_path(out).unlink(missing_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    print(f"bench: -> {out}")


def card_name(device: str) -> str:
    if device != "cuda":
        return "cpu"
    import torch

    return torch.cuda.get_device_name()


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
