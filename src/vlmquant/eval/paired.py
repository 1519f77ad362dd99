"""What the FP8 KV cache adds to a recipe's KLD, measured pair by pair.

Two exports measured by `eval` on the same eval set can be compared sample by sample: the
per-sample sums `eval` records (`per_sample`) make the difference of their KLD means, and a
bootstrap that resamples the same samples for both, an interval on the difference itself.
Unpaired, each recipe's own interval is wide (a few dozen samples of text), and two of them
overlap even when one recipe is better on nearly every sample; paired, the shared difficulty
of a sample cancels.

A recipe with an FP8 KV cache (the export's, or vLLM's runtime `fp8_per_token_head` on any
export) is paired with its *twin*: the recipe with the same weight format, calibration and BF16
units and a BF16 KV cache. Their difference is what the FP8 KV cache adds;
its ratio to the first recipe's (hf_ptq's) says whether another way of choosing the K/V scales
(e.g. `fp8_cast`) cuts that cost, and by how much.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from vlmquant.results.recipes import RecipeRow

RESAMPLES = 1000
HALF = 0.5  # the goal: at least halve what the FP8 KV cache adds


@dataclasses.dataclass(frozen=True)
class Measure:
    """What is paired: per-sample sums of `field` from the emulation's text group or from the
    eval's vLLM check (vLLM's own prompt logprobs)."""

    source: str  # "emulation" | "vllm"
    field: str
    label: str


# the emulation gives full logits, so its KLD; vLLM's prompt logprobs give the NLL of the text
# (the difference of two exports' quantized NLLs is what the FP8 KV cache adds in vLLM itself)
KLD = Measure("emulation", "kld", "KLD")
VLLM_NLL = Measure("vllm", "nll_quant", "NLL in vLLM")


def _samples(row: RecipeRow, measure: Measure = KLD) -> list[list[float]] | None:
    """[tokens, sum of the measure] per sample, in eval-set order; None if not recorded."""
    per = row.fidelity.text.per_sample if measure.source == "emulation" else row.vllm.per_sample
    if per is None or measure.field not in per.fields:
        return None
    i = per.fields.index(measure.field)
    return [[r[0], r[i]] for r in per.rows]


def _signature(row: RecipeRow) -> tuple:
    """What a recipe's linears are made of, the calibration set included: its twin has the same."""
    return (row.quant_algo, dataclasses.astuple(row.calibration), row.calib_sha256,
            tuple(sorted(row.exclude_modules)))  # fmt: skip


def twins(rows: list[RecipeRow], measure: Measure = KLD) -> list[tuple[RecipeRow, RecipeRow]]:
    """(recipe with an FP8 KV cache, its BF16-KV twin) for every recipe that has one measured on
    the same samples (the same token count per sample)."""
    pairs = []
    for r in rows:
        mine = _samples(r, measure)
        if not r.kv_cache or mine is None:
            continue
        for t in rows:
            theirs = _samples(t, measure)
            if (t.kv_cache is None and _signature(t) == _signature(r)
                    and theirs is not None
                    and [s[0] for s in theirs] == [s[0] for s in mine]):  # fmt: skip
                pairs.append((r, t))
                break
    return pairs


def _interval(values: list[float]) -> list[float]:
    v = sorted(values)
    return [v[int(0.025 * (len(v) - 1))], v[int(0.975 * (len(v) - 1))]]


def kv_costs(rows: list[RecipeRow], seed: int = 0, measure: Measure = KLD) -> list[dict[str, Any]]:
    """Per recipe with a twin: what its FP8 KV cache adds to the measure (mean over all tokens,
    as the table's KLD), a 95% paired-bootstrap interval, and the ratio to the first pair's
    with its interval (the same resamples for every pair)."""
    pairs = twins(rows, measure)
    if not pairs:
        return []
    n = len(_samples(pairs[0][0], measure))
    rng = random.Random(seed)
    picks = [list(range(n))] + [rng.choices(range(n), k=n) for _ in range(RESAMPLES)]

    def added(r: RecipeRow, t: RecipeRow) -> list[float]:
        a, b = _samples(r, measure), _samples(t, measure)
        out = []
        for pick in picks:
            tokens = sum(a[i][0] for i in pick)
            out.append((sum(a[i][1] for i in pick) - sum(b[i][1] for i in pick)) / tokens)
        return out

    ref = added(*pairs[0])
    result = []
    for r, t in pairs:
        if len(_samples(r, measure)) != n:
            continue
        cost = added(r, t)
        ratios = [c / d for c, d in zip(cost[1:], ref[1:], strict=True) if d > 0]
        result.append(
            {
                "recipe": r.recipe,
                "twin": t.recipe,
                "added": cost[0],
                "added_ci95": _interval(cost[1:]),
                "ratio_to": pairs[0][0].recipe,
                "ratio": cost[0] / ref[0] if ref[0] > 0 else None,
                "ratio_ci95": _interval(ratios) if len(ratios) > RESAMPLES // 2 else None,
                "samples": n,
            }
        )
    return result


def section(rows: list[RecipeRow]) -> list[str]:
    """The page's section: a table per measure some recipe has a measured twin for (the
    emulation's KLD; vLLM's own NLL where the eval's vLLM check recorded per-sample sums);
    nothing when none has."""
    tables = [(m, c) for m in (KLD, VLLM_NLL) if (c := kv_costs(rows, measure=m))]
    if not tables:
        return []
    first = tables[0][1][0]
    lines = [
        "",
        "## What the FP8 KV cache adds (paired)",
        "",
        f"Each recipe with an FP8 KV cache against its twin with a BF16 KV cache (the same weight "
        f"format, calibration and BF16 units), sample by sample on the same {first['samples']} "
        f"eval samples: what the FP8 KV cache adds, with a 95% paired-bootstrap interval "
        f"({RESAMPLES} resamples of whole samples, the same for every row), and its ratio to "
        f"{first['ratio_to']}'s. A ratio whose interval lies below {HALF} at least halves what "
        "the FP8 KV cache costs. The KLD is the emulation's (full logits); the NLL in vLLM comes "
        "from the eval's vLLM check, vLLM's own prompt logprobs of the same tokens.",
    ]
    for measure, costs in tables:
        lines += _table(measure, costs)
    return lines


def _table(measure: Measure, costs: list[dict[str, Any]]) -> list[str]:
    ref = costs[0]["ratio_to"]
    lines = [
        "",
        f"| recipe | twin (BF16 KV) | added {measure.label} [95%] | ratio to {ref}'s [95%] "
        "| halved |",
        "|---|---|---|---|---|",
    ]
    for c in costs:
        lo, hi = c["ratio_ci95"] or (None, None)
        halved = ("—" if c["recipe"] == ref or lo is None
                  else "yes" if hi < HALF else "no" if lo >= HALF else "not settled")  # fmt: skip
        ratio = "1 (reference)" if c["recipe"] == ref else (
            f"{c['ratio']:.2f}" + (f" [{lo:.2f}, {hi:.2f}]" if lo is not None else ""))  # fmt: skip
        lo_a, hi_a = c["added_ci95"]
        lines.append(
            f"| {c['recipe']} | {c['twin']} | {c['added']:.4f} [{lo_a:.4f}, {hi_a:.4f}] "
            f"| {ratio} | {halved} |"
        )
    return lines
