"""The recipe comparison's page (`recipes-*.json`, `results.recipes.Recipes`): per recipe its
format, size and fidelity, what a KLD budget kept BF16, GPU speed where benched, the paired
FP8-KV cost (`eval.paired`), and the size-against-KLD plot. Every number comes from the file."""

from __future__ import annotations

from pathlib import Path

from vlmquant.eval import paired
from vlmquant.eval.compare import VERSIONS
from vlmquant.results.quantize import BudgetChoice
from vlmquant.results.recipes import Recipes
from vlmquant.results.runs import machine_text


def _speed_cells(data: Recipes, name: str) -> str:
    if data.speed is None:
        return ""
    r = data.speed.by_recipe.get(name)
    if r is None:
        return " — | — | — |"
    c256 = f"{r.c256_output_tok_s:,.0f}" if r.c256_output_tok_s else "—"
    return f" {r.single_stream_tok_s:.1f} | {c256} | {r.engine_starts} |"


def _speed_note(data: Recipes) -> list[str]:
    speed = data.speed
    if speed is None:
        return ["- GPU speed: not measured for these recipes", ""]
    used = {r.bench for r in speed.by_recipe.values()}
    benches = [
        f"`{s.bench}` on {s.card} ("
        + ", ".join(f"{k} {v}" for k, v in s.versions.items())
        + ("" if s.complete else "; an incomplete run")
        + ")"
        for s in speed.sources
        if s.bench in used
    ]
    again = [
        f"{name} {r.single_stream_tok_s:.1f} in `{r.bench}`, "
        + ", ".join(f"{a.single_stream_tok_s:.1f} in `{a.bench}`" for a in r.also)
        for name, r in speed.by_recipe.items()
        if r.also
    ]
    repeat = (
        [
            "- The same recipe measured in two of these runs (single stream tok/s): "
            + "; ".join(again)
            + ": rows from different runs (different machine and engine starts) differ by "
            "about that much, so compare recipes within one run's page",
            "",
        ]
        if again
        else []
    )
    return [
        "- GPU speed columns: " + " and ".join(benches) + ", vLLM defaults, on the "
        "Qwen2.5-VL-3B shape with random weights (speed depends on the shapes and formats, not "
        "on the weights' values), the same recipes applied to it; the median over the engine "
        "starts shown; `—`: not benchmarked (calibration variants run at their recipe's speed; "
        "budget mixes were not built there)",
        "",
        *repeat,
    ]


def _units(b: BudgetChoice, show: int = 4) -> str:
    names = [k.unit for k in b.kept_bf16]
    if not names:
        return "nothing"
    more = f", … +{len(names) - show} more" if len(names) > show else ""
    return f"{len(names)} units ({', '.join(names[:show])}{more})"


def _ci(v: list[float] | None) -> str:
    return f" [{v[0]:.4f}, {v[1]:.4f}]" if v else ""


def plot(data: Recipes, png: Path) -> None:
    """Checkpoint size against KLD, one point per recipe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in data.recipes:
        x, y = r.safetensors_bytes / 2**20, r.fidelity.text.kld_mean
        ax.scatter([x], [y])
        ax.annotate(r.recipe, (x, y), fontsize=8, xytext=(4, 2), textcoords="offset points")
    ax.set_xlabel("checkpoint size (MiB)")
    ax.set_ylabel("KLD mean vs BF16 (held-out text)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def render(data: Recipes, png_name: str | None = None) -> str:
    rows = data.recipes
    first = rows[0]
    speed = data.speed
    base, es = first.fidelity.text, first.fidelity.eval_set
    lines = [
        "# Recipes on the trained model: fidelity against size",
        "",
        f"- base: `{first.fidelity.base}`, its own perplexity on this text "
        f"{base.ppl_base:.3f} ({base.tokens} scored tokens, {es.text_samples} text samples "
        f"held out from `{es.held_out_from}`)",
        f"- measured on: {machine_text(first.measured_on)}, by the eval's emulation of the "
        "engine arithmetic below",
        f"- emulated engine arithmetic: {first.emulated_kernels}; versions: "
        + ", ".join(f"{k} {v}" for k, v in first.versions.items() if k in VERSIONS),
        f"- code: {first.git_revision}",
        "- vLLM check: " + (first.vllm.skipped or "run (see the eval JSON)"),
        "",
        *_speed_note(data),
        "| recipe | format | KV cache | size MiB | KLD mean [95%] | KLD p99 | top-1 | PPL ratio "
        "[95%] | kept BF16 by the budget |"
        + (
            " GPU tok/s, single stream | GPU tok/s, 256 x (512 -> 256) | engine starts |"
            if speed
            else ""
        ),
        "|---|---|---|---|---|---|---|---|---|" + ("---|---|---|" if speed else ""),
    ]
    base_mib = first.base_safetensors_bytes / 2**20
    lines.append(
        f"| BF16 base | — | BF16 | {base_mib:.1f} | 0 | 0 | 1 | 1 | |"
        + _speed_cells(data, "BF16 base")
    )
    for r in rows:
        t, b = r.fidelity.text, r.kld_budget
        kept = f"budget {b.budget:g} {'met' if b.met else 'missed'}: {_units(b)}" if b else ""
        lines.append(
            f"| {r.recipe} | {r.quant_algo} | {r.kv_cache or 'BF16'} | "
            f"{r.safetensors_bytes / 2**20:.1f} | {t.kld_mean:.4f}{_ci(t.kld_mean_ci95)} | "
            f"{t.kld_p99:.3f} | {t.top1_agreement:.3f} | "
            f"{t.ppl_ratio:.4f}{_ci(t.ppl_ratio_ci95)} | {kept} |" + _speed_cells(data, r.recipe)
        )
    if png_name:
        lines += ["", f"![size against KLD]({png_name})"]
    lines += paired.section(rows)
    budgets = [(r, r.kld_budget) for r in rows if r.kld_budget]
    if budgets:
        lines += [
            "",
            "Budgets: the KLD the sensitivity predicted for the chosen mix, what the export "
            "measured on the sensitivity's own text set, and the share of the whole export's "
            "weight-bytes saving kept; exports: how many the budget made (after a measured "
            "miss the next aims lower and keeps more BF16), with each one's measured KLD.",
            "",
            "| recipe | budget | predicted | measured (sensitivity text) | saving kept | exports |",
            "|---|---|---|---|---|---|",
        ]
        for r, b in budgets:
            measured = f"{b.measured.kld_mean:.4f}" if b.measured else "—"
            exports = " → ".join(f"{x.measured_kld:.4f}" for x in b.rounds)
            lines.append(
                f"| {r.recipe} | {b.budget:g} | {b.predicted_kld:.4f} | {measured} "
                f"| {b.share_of_saving_kept:.1%} | {len(b.rounds) or 1}"
                + (f" ({exports})" if len(b.rounds) > 1 else "")
                + " |"
            )
    return "\n".join(lines) + "\n"
