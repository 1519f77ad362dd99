"""infer --compare: the quantized model's greedy tokens against the base's, prompt by prompt
(compare.json and compare.md), and the sample_NN.txt each prompt's answer is written to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmquant.core.markdown import table_cell
from vlmquant.synthetic import drawable


def sample_text(i: int, r: dict[str, Any], result: dict[str, Any]) -> str:
    s, used = result["sampling"], result["used"]
    image = (
        f"{r['image']} (drawn by vlmquant)"
        if r["image"] and drawable(r["image"])
        else r["image"] or "none"
    )
    return (
        f"# sample {i:02d}\n"
        f"prompt: {r['text']}\n"
        f"image: {image}\n"
        f"model: {result['model']}\n"
        f"engine: vLLM {result['vllm_version']}, quantization {used.get('quantization')}, "
        f"KV cache {used.get('kv_cache_dtype')}\n"
        f"settings: temperature={s['temperature']} top_p={s['top_p']} "
        f"max_tokens={s['max_tokens']} seed={s['seed']}\n"
        f"tokens: prompt {r['prompt_tokens']}, output {len(r['token_ids'])} "
        f"({r['finish_reason']})\n"
        f"\n--- response ---\n{r['response']}\n"
    )


def first_difference(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def comparison(model: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for i, (m, b) in enumerate(zip(model["results"], base["results"], strict=True), 1):
        diff = first_difference(m["token_ids"], b["token_ids"])
        rows.append(
            {
                "sample": i,
                "prompt": m["text"],
                "image": m["image"],
                "base_response": b["response"],
                "model_response": m["response"],
                "tokens_match": diff is None,
                "first_differing_token": diff,
                "base_tokens": len(b["token_ids"]),
                "model_tokens": len(m["token_ids"]),
            }
        )
    return {
        "base": base["model"],
        "model": model["model"],
        "identical": sum(r["tokens_match"] for r in rows),
        "prompts": len(rows),
        "rows": rows,
    }


def compare_markdown(cmp: dict[str, Any], machine: str) -> str:
    """compare.md: the token comparison, and `machine` (`results.runs.machine_text`): where
    both engines ran."""
    lines = [
        f"# {Path(cmp['model']).name} vs {Path(cmp['base']).name}",
        "",
        f"- run on: {machine}",
        "",
        f"Greedy token sequences identical for {cmp['identical']} of {cmp['prompts']} prompts.",
        "",
        "| # | prompt | image | base (BF16) | quantized | same tokens | first diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in cmp["rows"]:
        diff = r["first_differing_token"]
        lines.append(
            f"| {r['sample']} | {table_cell(r['prompt'], 60)} | {r['image'] or ''} "
            f"| {table_cell(r['base_response'], 120)} | {table_cell(r['model_response'], 120)} "
            f"| {'yes' if r['tokens_match'] else 'no'} "
            f"| {'' if diff is None else diff} |"
        )
    return "\n".join(lines) + "\n"
