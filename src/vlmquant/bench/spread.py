"""One model and mode measured over several engine starts, merged into one result.

The headline of every timing is the median over starts of each start's own median, and each
start's value is kept beside it (`*_starts`), so a page can show median and min-max. Facts of
the engine that do not vary between starts (kernels, KV capacity, weights) come from the first
start; if the KV capacity did vary, every start's value is kept too.
"""

from __future__ import annotations

import copy
import statistics
from typing import Any


def merge_starts(starts: list[dict[str, Any]]) -> dict[str, Any]:
    """Start results (bench.measure.run_bench plus the worker's engine facts) -> one result."""
    merged = copy.deepcopy(starts[0])
    merged["engine_starts"] = len(starts)
    if len(starts) == 1:
        return merged
    ss = [s["single_stream"] for s in starts]
    merged["single_stream"]["tok_s_starts"] = [s["tok_s"] for s in ss]
    merged["single_stream"]["tok_s"] = statistics.median([s["tok_s"] for s in ss])
    for key in ("tpot_s", "ttft_s"):
        merged["single_stream"][key] = _timing([s[key] for s in ss])
    for i, case in enumerate(merged["matrix"]):
        for key in ("output_tok_s", "total_tok_s"):
            values = [s["matrix"][i][key] for s in starts]
            case[f"{key}_starts"] = values
            case[key] = statistics.median(values)
        for key in ("ttft_s", "tpot_s", "wall_s"):
            case[key] = _timing([s["matrix"][i][key] for s in starts])
    for key in ("image_prefill_s", "text_prefill_same_len_s"):
        if all(key in s for s in starts):
            merged[key] = _timing([s[key] for s in starts])
    if all("image_profile" in s for s in starts):
        merged["image_profile_starts"] = [s["image_profile"] for s in starts]
    if "load_s" in merged:
        merged["load_s_starts"] = [s["load_s"] for s in starts]
        merged["load_s"] = statistics.median(merged["load_s_starts"])
    kv = [s.get("kv_cache_tokens") for s in starts]
    if len(set(kv)) > 1:
        merged["kv_cache_tokens_starts"] = kv
    return merged


def _timing(stats: list[dict[str, float]]) -> dict[str, Any]:
    """Per-start {median, min, max, n} -> the median of the medians, the extremes of all."""
    return {
        "median": statistics.median([s["median"] for s in stats]),
        "min": min(s["min"] for s in stats),
        "max": max(s["max"] for s in stats),
        "n": sum(s["n"] for s in stats),
        "starts": [s["median"] for s in stats],
    }


def spread_text(value: float, starts: list[float] | None, fmt: str = "{:,.1f}") -> str:
    """`median (min-max)` when there were several starts, else the value alone."""
    if not starts or len(starts) < 2:
        return fmt.format(value)
    return f"{fmt.format(value)} ({fmt.format(min(starts))}-{fmt.format(max(starts))})"
