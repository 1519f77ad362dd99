"""The eval's renderer: the sections an eval result gives a results page (one per eval JSON,
under `vlmquant report --results`) and a variant's report (its Fidelity section), and the
per-layer error plot. Every number comes from the typed result (`results.eval.EvalResult`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmquant.core.markdown import notes
from vlmquant.results.eval import EvalResult, Group

GROUP_COLUMNS = (
    "tokens",
    "ppl_base",
    "ppl_quant",
    "ppl_ratio",
    "kld_mean",
    "kld_median",
    "kld_p99",
    "kld_max",
    "top1_agreement",
    "kld_mean_ci95",
    "ppl_ratio_ci95",
)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:  # e.g. no interval from a single sample, or an empty group
        return "n/a"
    if isinstance(v, list):  # a 95% interval
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def group_table(groups: dict[str, Group]) -> list[str]:
    lines = ["| group | " + " | ".join(GROUP_COLUMNS) + " |", "|---|" + "---|" * len(GROUP_COLUMNS)]
    for name, g in groups.items():
        cells = [_fmt(getattr(g, c)) if g.tokens else "" for c in GROUP_COLUMNS[1:]]
        lines.append(f"| {name} | {g.tokens} | " + " | ".join(cells) + " |")
    return lines


def vllm_line(r: EvalResult) -> str:
    v, text = r.vllm, r.groups.get("text")
    if v.skipped is not None:
        return f"vLLM check: {v.skipped}"
    clear = v.top1_agreement_emulation_vs_vllm_clear
    emulated = (
        f" (emulation: {text.nll_base:.4f} / {text.nll_quant:.4f})"
        if text and text.nll_base is not None
        else ""
    )
    return (
        f"vLLM check: vLLM {v.vllm_version}, {v.tokens} tokens, NLL base {v.nll_base:.4f} / "
        f"quantized {v.nll_quant:.4f}{emulated}, PPL ratio {v.ppl_ratio:.4f}, top-1 base vs "
        f"quantized {v.top1_agreement_base_vs_quant:.3f}, emulation vs vLLM "
        f"{v.top1_agreement_emulation_vs_vllm:.3f} (clear positions: "
        f"{_fmt(clear.agreement if clear else None)})"
    )


def noise_floor_line(r: EvalResult) -> list[str]:
    floor = r.emulation_noise_floor  # results before it existed have none
    if floor is None:
        return []
    return [
        f"Noise floor: the emulation against itself with its FP8 linears' outputs nudged by "
        f"{floor.nudge:g} (relative, before BF16 rounding) agrees on top-1 at "
        f"{floor.top1_agreement:.3f} of {floor.positions} positions (clear positions: "
        f"{_fmt(floor.top1_agreement_clear.agreement)}); an engine whose sums run in another "
        "order cannot be expected to agree more closely.",
        "",
    ]


def body(r: EvalResult) -> list[str]:
    """What one eval measured: its inputs, the group table, the worst layers, the vLLM check."""
    es = r.eval_set
    lines = [
        f"- base: `{r.base}`",
        f"- quantized: `{r.quantized}`",
        f"- eval set: {es.text_samples} text samples, {es.image_text_samples} image+text "
        f"samples (held out from {es.held_out_from})",
        f"- emulated engine arithmetic: {r.emulated_kernels} build of vLLM (vlmquant.eval.emulate)",
        *(
            [f"- KV cache: {r.kv_cache_dtype} (eval --kv-cache-dtype; the export's own: auto)"]
            if r.kv_cache_dtype != "auto"
            else []
        ),
        *(
            [
                f"- KV cache BF16 in layers {', '.join(map(str, r.kv_cache_bf16_layers))} "
                "(the export's precision map; vLLM's --kv-cache-dtype-skip-layers)"
            ]
            if r.kv_cache_bf16_layers
            else []
        ),  # fmt: skip
        "- time: " + ", ".join(f"{k} {v} s" for k, v in r.run.timings_s.items()),
        "- memory: " + ", ".join(f"{k} {v}" for k, v in r.run.memory.items()),
        "",
        *group_table(r.groups),
        "",
        "Ten worst layers by activation error (FP8 output vs BF16 output on the same BF16 input):",
        "",
        "| module | activation error | weight error |",
        "|---|---|---|",
    ]
    for w in r.worst_layers:
        lines.append(f"| {w.module} | {w.activation_error:.4f} | {w.weight_error:.4f} |")
    return [*lines, "", vllm_line(r), "", *noise_floor_line(r)]


def report_section(r: EvalResult, png_name: str) -> list[str]:
    """A variant report's Fidelity section: the body, and the plot `layer_plot` wrote."""
    return body(r) + ([f"![per-layer error]({png_name})", ""] if r.layers else [])


def layer_plot(r: EvalResult, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(r.layers)
    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.bar(
        range(len(names)), [r.layers[n].activation_error for n in names], label="activation error"
    )
    ax.plot(
        range(len(names)), [r.layers[n].weight_error for n in names], "k.", label="weight error"
    )
    ax.set_xlabel("FP8 linear (checkpoint order)")
    ax.set_ylabel("relative error")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def render(title: str, files: list[Path]) -> str:
    """A results page: one section per eval JSON; `notes.md` beside the first file, when
    present, goes under the title (context only)."""
    lines = [f"# {title}", "", *(notes(files[0].parent) if files else [])]
    for f in files:
        lines += [f"## {f.stem}", "", *body(EvalResult.read(f))]
    return "\n".join(lines)
