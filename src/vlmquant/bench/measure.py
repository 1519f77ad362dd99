"""Measurements taken inside a vLLM engine process (called from vlmquant.infer.engine).

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


def weight_bytes(model) -> int:
    """Runs inside the worker: bytes of every parameter and buffer as loaded."""
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        total += t.numel() * t.element_size()
    return total


def run_bench(llm, spec: dict[str, Any]) -> dict[str, Any]:
    import importlib

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

    timed(prompts(2, 32), 16)  # warm-up (graph capture and compile happen at load)
    result: dict[str, Any] = {}
    ss = cfg["single_stream"]
    result["single_stream"] = case(1, ss[0], ss[1], cfg["repeats"])
    result["single_stream"]["tok_s"] = 1 / result["single_stream"]["tpot_s"]["median"]
    result["matrix"] = [
        case(c, inp, out, max(1, cfg["matrix_repeats"]))
        for inp, out in cfg["shapes"]
        for c in cfg["concurrency"]
    ]
    if cfg.get("image"):
        from vlmquant.infer.engine import _messages

        msgs = _messages({"text": "Describe this picture in one sentence.", "image": cfg["image"]})
        params = SamplingParams(max_tokens=1, temperature=0.0)
        llm.chat(msgs, params, use_tqdm=False)
        times = []
        for _ in range(cfg["repeats"]):
            t0 = time.perf_counter()
            llm.chat(msgs, params, use_tqdm=False)
            times.append(time.perf_counter() - t0)
        result["image_prefill_s"] = _stats(times)
    try:
        probe = importlib.import_module("vlmquant.bench.measure").weight_bytes
        result["weight_bytes_loaded"] = llm.apply_model(probe)[0]
    except Exception as e:  # apply_model needs VLLM_ALLOW_INSECURE_SERIALIZATION
        result["weight_bytes_loaded"] = None
        result["weight_bytes_error"] = str(e)[:200]
    return result
