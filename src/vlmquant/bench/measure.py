"""The bench stage's engine task: measurements taken inside a vLLM engine process.

Offline engine, so latency is measured per batch: time to first token = the batch run with
max_tokens=1 (prefill), time per output token = (full run - prefill) / (output tokens - 1).
Prompts are random token ids (seeded) and prefix caching is off, so no run reuses another's
cache. Every timing is repeated; the JSON keeps median, min and max.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def run_bench(llm, spec: dict[str, Any]) -> dict[str, Any]:
    from vllm import SamplingParams

    cfg = spec["bench"]
    vocab = min(len(llm.get_tokenizer()), 1000)
    rng = random.Random(cfg.get("seed", 0))

    def prompts(n: int, length: int) -> list[dict[str, Any]]:
        return [
            {"prompt_token_ids": [rng.randrange(10, vocab) for _ in range(length)]}
            for _ in range(n)
        ]

    def timed(batch: list[dict[str, Any]], max_tokens: int) -> tuple[float, int]:
        params = SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=0.0)
        t0 = time.perf_counter()
        outs = llm.generate(batch, params, use_tqdm=False)
        return time.perf_counter() - t0, sum(len(o.outputs[0].token_ids) for o in outs)

    def case(concurrency: int, inp: int, out: int, repeats: int) -> dict[str, Any]:
        # warm-up at this batch size: first-use costs (lazy kernel setup, graph capture at a new
        # size) otherwise land in the first measured run
        timed(prompts(concurrency, inp), min(out, 8))
        ttft, full, tpot = [], [], []
        for _ in range(repeats):
            ttft.append(timed(prompts(concurrency, inp), 1)[0])
            dt, n = timed(prompts(concurrency, inp), out)
            full.append(dt)
            tpot.append((dt - ttft[-1]) / max(out - 1, 1))
        med = statistics.median(full)
        return {
            "concurrency": concurrency,
            "input_len": inp,
            "output_len": out,
            "output_tok_s": concurrency * out / med,
            "total_tok_s": concurrency * (inp + out) / med,
            "ttft_s": _stats(ttft),
            "tpot_s": _stats(tpot),
            "wall_s": _stats(full),
        }

    result: dict[str, Any] = {}
    ss = cfg["single_stream"]
    result["single_stream"] = case(1, ss[0], ss[1], cfg["repeats"])
    result["single_stream"]["tok_s"] = 1 / result["single_stream"]["tpot_s"]["median"]
    result["matrix"] = [
        case(c, inp, out, max(1, cfg["matrix_repeats"]))
        for inp, out in cfg["shapes"]
        for c in cfg["concurrency"]
    ]
    if cfg.get("profile_steps"):
        result["profile"] = profile_decode(llm, cfg["profile_steps"], ss[0], vocab)
    if cfg.get("image"):
        from vlmquant.engine.messages import chat_messages
        from vlmquant.prompts import load_image

        image = load_image(cfg["image"], cfg.get("image_size", 112))

        def request(k: int):
            # one pixel differs per request: vLLM caches encoder outputs by image hash, and a
            # repeated image would skip the vision tower this case exists to time
            img = image.copy()
            img.putpixel((0, 0), (k % 256, k // 256 % 256, 1))
            msgs = chat_messages("Describe this picture in one sentence.", img)
            return llm.chat(msgs, SamplingParams(max_tokens=1, temperature=0.0), use_tqdm=False)

        n_tokens = len(request(0)[0].prompt_token_ids)  # warm-up
        result["image_prompt_tokens"] = n_tokens
        times, text_times = [], []
        text = prompts(1, n_tokens)
        timed(text, 1)  # warm-up at this prompt length
        for k in range(1, cfg["repeats"] + 1):
            t0 = time.perf_counter()
            request(k)
            times.append(time.perf_counter() - t0)
            # the same number of prompt tokens as text: the language model's share of the
            # request; the rest is the image's (preprocessing, vision tower, merging)
            text_times.append(timed(text, 1)[0])
        result["image_prefill_s"] = _stats(times)
        result["text_prefill_same_len_s"] = _stats(text_times)
        if cfg.get("profile_steps"):
            k = cfg["repeats"] + 1
            result["image_profile"] = profile_image(
                lambda: request(k), lambda: timed(text, 1), n_tokens
            )
    return result


# Kernel-name patterns (lowercase) -> category, first match wins. Triton kernels come first:
# torch.compile names them after every op they fused (norm + FP8 quantize read
# "..._cutlass_scaled_mm_fused_add_rms_norm..."), which would otherwise match "gemm".
KERNEL_CATEGORIES = (
    ("fused elementwise (triton)", ("triton",)),
    ("attention", ("flash", "fmha", "attn", "attention", "paged")),
    (
        "gemm",
        ("gemm", "cutlass", "xmma", "nvjet", "cublas", "scaled_mm", "matmul", "splitk", "marlin"),
    ),
    ("fp8 quantize", ("quant", "fp8")),
    ("sampling", ("sample", "topk", "top_k", "argmax", "softmax", "sort")),
    ("copy / memset", ("memcpy", "memset", "copy")),
)


def kernel_category(name: str) -> str:
    low = name.lower()
    for category, patterns in KERNEL_CATEGORIES:
        if any(p in low for p in patterns):
            return category
    return "other"


def kernel_times(fn, scopes: dict[str, float] | None = None):
    """Wall seconds of fn() under the torch profiler, and GPU time (us) and calls per kernel.
    `scopes`, when given, is filled with the host (CPU) ms of each of vLLM's own profiler
    scopes (`gpu_model_runner: ...`, on with VLLM_CUSTOM_SCOPES_FOR_PROFILING=1)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CUDA]
    if scopes is not None:
        activities.append(ProfilerActivity.CPU)
    torch.cuda.synchronize()
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    return wall, tally(prof.key_averages(), scopes)


def tally(events, scopes: dict[str, float] | None = None) -> dict[str, tuple[float, int]]:
    """GPU time (us) and calls per kernel from a profile's averaged events; with `scopes`, also
    the CPU ms of vLLM's scopes. Only device-side events count as kernels: with CPU tracing on,
    a CPU op carries the device time of the kernels it launched, which would count them twice
    (a profile on the H200 read more GPU-busy time than wall time that way)."""
    from torch.autograd import DeviceType

    kernels: dict[str, tuple[float, int]] = {}
    for evt in events:
        if evt.key.startswith(VLLM_SCOPE):  # a scope, also traced as a GPU range: no kernel
            if scopes is not None and evt.device_type == DeviceType.CPU:
                name = evt.key[len(VLLM_SCOPE) :].strip()
                scopes[name] = scopes.get(name, 0.0) + evt.cpu_time_total / 1000
            continue
        us = getattr(evt, "self_device_time_total", 0.0) or 0.0
        if us > 0 and evt.device_type != DeviceType.CPU:
            t, n = kernels.get(evt.key, (0.0, 0))
            kernels[evt.key] = (t + us, n + evt.count)
    return kernels


# vLLM's model-runner profiler scopes (record_function names), and the switch that turns them on
VLLM_SCOPE = "gpu_model_runner:"
SCOPES_ENV = "VLLM_CUSTOM_SCOPES_FOR_PROFILING"


def by_category(kernels: dict[str, tuple[float, int]], scale: float = 1.0) -> dict[str, float]:
    """Summed time per kernel category (times `scale`), largest first."""
    categories: dict[str, float] = {}
    for k, (t, _) in kernels.items():
        c = kernel_category(k)
        categories[c] = categories.get(c, 0.0) + t * scale
    return dict(sorted(categories.items(), key=lambda kv: -kv[1]))


def _kernel_summary(wall: float, kernels: dict[str, tuple[float, int]]) -> dict[str, Any]:
    """One profiled run: wall and GPU-busy ms, ms per kernel category, kernel launches."""
    categories = by_category(kernels, 1 / 1000)
    ranked = sorted(kernels.items(), key=lambda kv: -kv[1][0])
    return {
        "wall_ms": 1000 * wall,
        "gpu_busy_ms": sum(categories.values()),
        "categories_ms": categories,
        "kernel_launches": sum(n for _, n in kernels.values()),
        "top_kernels": [
            {"name": k[:160], "category": kernel_category(k), "ms": us / 1000, "calls": n}
            for k, (us, n) in ranked[:10]
        ],
    }


def profile_image(image_request, text_request, prompt_tokens: int) -> dict[str, Any]:
    """Where one image request's time goes: the request (a fresh image, so the vision tower runs)
    and a text prompt of the same token count under the torch profiler, each as wall time, GPU
    kernel time by category and kernel launches. The image's share is their difference; wall
    minus GPU busy is host time (preprocessing, scheduling, launches), and the host ms of each of
    vLLM's model-runner scopes says which part of it is the model runner's (the profiler's CPU
    tracing slows the host further). Same process requirement as profile_decode."""
    runs = {}
    for name, fn in (("image", image_request), ("text_same_len", text_request)):
        scopes: dict[str, float] = {}
        runs[name] = _kernel_summary(*kernel_times(fn, scopes))
        # host ms inside vLLM's model runner (its scopes nest nothing on the main path); the
        # rest of the wall is the front end: chat template, processor, hashing, scheduling
        runs[name]["host_scopes_ms"] = dict(sorted(scopes.items(), key=lambda kv: -kv[1]))
    return {"prompt_tokens": prompt_tokens, **runs}


def profile_decode(llm, steps: int, prompt_len: int, vocab: int) -> dict[str, Any]:
    """GPU time of `steps` single-stream decode steps, by kernel category.

    Needs the engine in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0), so CUPTI sees its
    kernels, including those replayed from CUDA graphs. Two profiled runs on the same prompt:
    max_tokens=1 (the prefill) and max_tokens=steps+1; their difference is the decode steps.
    """
    from vllm import SamplingParams

    rng = random.Random(1)
    prompt = [{"prompt_token_ids": [rng.randrange(10, vocab) for _ in range(prompt_len)]}]

    def run(max_tokens: int) -> tuple[float, dict[str, tuple[float, int]]]:
        params = SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=0.0)
        llm.generate(prompt, params, use_tqdm=False)  # warm, same shapes
        return kernel_times(lambda: llm.generate(prompt, params, use_tqdm=False))

    wall_p, prefill = run(1)
    wall_d, full = run(steps + 1)
    per_kernel = {}
    for k, (us, n) in full.items():
        us0, n0 = prefill.get(k, (0.0, 0))
        per_kernel[k] = ((us - us0) / steps, n - n0)
    per_kernel = {k: v for k, v in per_kernel.items() if v[0] > 0}
    categories = by_category(per_kernel)
    gpu_us = sum(categories.values())
    wall_us = (wall_d - wall_p) / steps * 1e6
    ranked = sorted(per_kernel.items(), key=lambda kv: -kv[1][0])
    return {
        "steps": steps,
        "wall_us_per_step": wall_us,  # under the profiler, which slows the host
        "gpu_busy_us_per_step": gpu_us,
        "categories_us_per_step": categories,
        "kernel_launches_per_step": sum(n for _, n in per_kernel.values()) / steps,
        "top_kernels": [
            {"name": k[:160], "category": kernel_category(k), "us_per_step": us, "calls": n}
            for k, (us, n) in ranked[:12]
        ],
        "kernels": [{"name": k[:160], "us_per_step": us, "calls": n} for k, (us, n) in ranked],
    }
