"""The bench's settings checked before an engine starts: shapes, KEY=VALUE engine arguments
and environment, the device, every case fitting --max-model-len, and the serving mode's own."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from vlmquant.core.errors import BadInput
from vlmquant.core.outputs import check_apart, check_output
from vlmquant.synthetic import drawable

# engine arguments the bench sets from its own flags (--engine-arg may not override them)
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


def validate(cfg: Any) -> Checked:
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


def check_fits(cfg: Any, shapes: list[tuple[int, int]]) -> None:
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


def validate_serve(cfg: Any) -> None:
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
