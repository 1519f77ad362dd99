"""The eval stage's engine task: vLLM's own prompt logprobs for token sequences."""

from __future__ import annotations

from typing import Any


def score_tokens(llm, spec: dict[str, Any]) -> dict[str, Any]:
    """Per sequence and position t >= 1: log p(token_t) and vLLM's top-1 token."""
    import time

    from vllm import SamplingParams

    token_prompts = spec["token_prompts"]
    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1)
    prompts = [{"prompt_token_ids": ids} for ids in token_prompts]
    t0 = time.perf_counter()
    out = []
    for ids, res in zip(token_prompts, llm.generate(prompts, params, use_tqdm=False), strict=True):
        logprobs, top1 = [], []
        for tok, entry in zip(ids[1:], res.prompt_logprobs[1:], strict=True):
            logprobs.append(entry[tok].logprob)
            top1.append(next(t for t, lp in entry.items() if lp.rank == 1))
        out.append({"logprobs": logprobs, "top1": top1})
    return {"score_s": round(time.perf_counter() - t0, 3), "scores": out}
