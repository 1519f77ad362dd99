"""The eval's vLLM check: the same text scored by vLLM itself (base and quantized engines, the
worker task in eval.vllm_scores), and how its top-1 tokens agree with the emulation's."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

from vlmquant.eval.agreement import clear_agreement

VLLM_PER_SAMPLE = ("tokens", "nll_base", "nll_quant")  # sums over each sample's scored tokens


def run_vllm(
    cfg: Any,  # the eval's settings (EvalConfig)
    token_prompts: list[list[int]],
    emu_top1: list[list[tuple[int, float]]],
    workdir: Path,
) -> dict[str, Any]:
    if not cfg.vllm:
        return {"skipped": "--no-vllm"}
    if importlib.util.find_spec("vllm") is None:
        return {"skipped": "vLLM is not importable here (bash scripts/setup.sh installs it)"}
    if not token_prompts:
        return {"skipped": "no text samples to score"}
    from vlmquant.engine.args import engine_kwargs
    from vlmquant.engine.worker import run_worker

    scored = {}
    for role, path in (("base", cfg.base), ("quantized", cfg.quantized)):
        spec = {
            "engine": engine_kwargs(
                path,
                max_model_len=cfg.max_model_len,
                enforce_eager=True,
                gpu_memory_utilization=cfg.gpu_memory_utilization,
                tensor_parallel_size=cfg.tensor_parallel_size,
                kv_cache_dtype="auto" if role == "base" else cfg.kv_cache_dtype,
            ),
            "task": "vlmquant.eval.vllm_scores:score_tokens",
            "token_prompts": token_prompts,
        }
        scored[role] = run_worker(spec, workdir / f"vllm_{role}")
    # per sample, in eval-set order, as the emulation's groups record theirs: two exports
    # scored on the same samples give a paired interval on vLLM's own numbers (eval.paired)
    per_sample = [
        [len(sb["logprobs"]), -sum(sb["logprobs"]), -sum(sq["logprobs"])]
        for sb, sq in zip(scored["base"]["scores"], scored["quantized"]["scores"], strict=True)
    ]
    n, nll_base, nll_quant = (sum(column) for column in zip(*per_sample, strict=True))
    pairs = [
        (a, b)
        for sa, sb in zip(scored["base"]["scores"], scored["quantized"]["scores"], strict=True)
        for a, b in zip(sa["top1"], sb["top1"], strict=True)
    ]
    emu = [
        (a, b, margin)
        for sq, e in zip(scored["quantized"]["scores"], emu_top1, strict=True)
        for a, (b, margin) in zip(sq["top1"], e, strict=True)
    ]
    return {
        "vllm_version": scored["base"]["vllm_version"],
        "used": {r: scored[r]["used"] for r in scored},
        "tokens": n,
        "nll_base": nll_base / n,
        "nll_quant": nll_quant / n,
        "ppl_ratio": math.exp((nll_quant - nll_base) / n),
        "top1_agreement_base_vs_quant": sum(a == b for a, b in pairs) / len(pairs),
        "top1_agreement_emulation_vs_vllm": sum(a == b for a, b, _ in emu) / len(emu),
        "top1_agreement_emulation_vs_vllm_clear": clear_agreement(emu),
        "per_sample": {"fields": list(VLLM_PER_SAMPLE), "rows": per_sample},
        "note": "text samples only; image+text scoring in vLLM is not done",
    }
