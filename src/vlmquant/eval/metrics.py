"""Token-level metrics between two next-token distributions, and their summaries."""

from __future__ import annotations

import math
from typing import Any

import torch


def token_stats(
    base_logits: torch.Tensor, quant_logits: torch.Tensor, targets: torch.Tensor, keep: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per position (logits at t predict targets at t): NLLs, KL(base || quant), top-1 match."""
    lb = torch.log_softmax(base_logits.float(), dim=-1)[keep]
    lq = torch.log_softmax(quant_logits.float(), dim=-1)[keep]
    y = targets[keep]
    return {
        "nll_base": -lb.gather(-1, y[:, None])[:, 0],
        "nll_quant": -lq.gather(-1, y[:, None])[:, 0],
        "kld": (lb.exp() * (lb - lq)).sum(-1).clamp_min(0.0),
        "top1_base": lb.argmax(-1),
        "top1_quant": lq.argmax(-1),
        # how clearly the quantized model prefers its top-1 (log-prob gap to the runner-up)
        "margin_quant": (lambda t: t[:, 0] - t[:, 1])(lq.topk(2, dim=-1).values),
    }


BOOTSTRAP_RESAMPLES = 1000


def bootstrap_ci95(stats: list[dict[str, torch.Tensor]], seed: int = 0) -> dict[str, list[float]]:
    """95% percentile intervals on KLD mean and PPL ratio, resampling whole samples with
    replacement (tokens of one sample are not independent of each other); none from a single
    sample (every resample would be that sample: a zero-width interval that claims certainty)."""
    if len(stats) < 2:
        return {"kld_mean_ci95": None, "ppl_ratio_ci95": None}
    sums = torch.tensor(
        [
            [s["kld"].double().sum(), s["nll_base"].double().sum(), s["nll_quant"].double().sum()]
            for s in stats
        ],
        dtype=torch.float64,
    )
    counts = torch.tensor([s["kld"].numel() for s in stats], dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(len(stats), (BOOTSTRAP_RESAMPLES, len(stats)), generator=g)
    n = counts[pick].sum(1).clamp_min(1)
    kld, nll_b, nll_q = (sums[pick, i].sum(1) / n for i in range(3))
    q = torch.tensor([0.025, 0.975], dtype=torch.float64)
    return {
        "kld_mean_ci95": torch.quantile(kld, q).tolist(),
        "ppl_ratio_ci95": torch.quantile((nll_q - nll_b).exp(), q).tolist(),
    }


def summarize(stats: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
    if not stats:
        return {"tokens": 0}
    cat = {k: torch.cat([s[k] for s in stats]) for k in stats[0]}
    kld = cat["kld"].double()
    nll_b, nll_q = cat["nll_base"].double().mean().item(), cat["nll_quant"].double().mean().item()
    return {
        "tokens": int(kld.numel()),
        "nll_base": nll_b,
        "nll_quant": nll_q,
        "ppl_base": math.exp(nll_b),
        "ppl_quant": math.exp(nll_q),
        "ppl_ratio": math.exp(nll_q - nll_b),
        "kld_mean": kld.mean().item(),
        "kld_median": kld.median().item(),
        "kld_p99": torch.quantile(kld, 0.99).item() if kld.numel() > 1 else kld.max().item(),
        "kld_max": kld.max().item(),
        "top1_agreement": (cat["top1_base"] == cat["top1_quant"]).double().mean().item(),
        "samples": len(stats),
        **bootstrap_ci95(stats),
        "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "unit": "sample", "seed": 0},
        # per sample, in eval-set order: so two exports measured on the same set can be
        # compared pair by pair (a paired interval on their difference; see eval.compare)
        "per_sample": {
            "fields": list(PER_SAMPLE),
            "rows": [
                [int(s["kld"].numel()), *(float(s[k].double().sum()) for k in PER_SAMPLE[1:])]
                for s in stats
            ],
        },
    }


PER_SAMPLE = ("tokens", "kld", "nll_base", "nll_quant")  # the sums over each sample's tokens
