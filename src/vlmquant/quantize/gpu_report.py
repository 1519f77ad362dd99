"""Render the quantize stage's GPU run (scripts/gpu/quantize_3b.sh results) as markdown.

    vlmquant report --results FOLDER   (renders this page, see vlmquant.report.results)

RESULTS_DIR holds what the script packed: environment.txt, make_tiny.txt,
quantize_<variant>.run.json, inspect_<checkpoint>.json, vllm_<checkpoint>.json.
Every number in the page comes from those files.
"""

from __future__ import annotations

from pathlib import Path

from vlmquant.results.checkpoint import Inspect
from vlmquant.results.infer import Generation
from vlmquant.results.quantize import Calibration, QuantizeRun

VARIANTS = {
    "lm": "LM-only FP8 (hf_ptq), demo captions",
    "vlm": "vision FP8 (`--scope full`), demo captions + drawn images",
    "long": "LM-only FP8, long texts (timing run)",
}


def calibration_text(c: Calibration) -> str:
    """Text rows are cut at --calib-seq tokens; image-text rows are not cut."""
    if c.mode == "image-text":
        return f"image-text, {c.samples} samples, not truncated"
    return f"{c.mode}, {c.samples} x <= {c.max_seq} tok"


def render(res: Path, git_rev: str | None = None) -> str:
    env = (res / "environment.txt").read_text().split("\n")
    card = env[0].split(",")[0]
    runs = {
        v: QuantizeRun.read(res / f"quantize_{v}.run.json")
        for v in VARIANTS
        if (res / f"quantize_{v}.run.json").exists()
    }
    first = next(iter(runs.values()))
    lines = [
        f"# Quantize stage on the Qwen2.5-VL-3B shape — {card}",
        "",
        f"- card: {env[0]}",
        f"- software: {env[1]}",
        f"- code: {first.git_revision or git_rev or 'not recorded'}"
        + (
            " (the GPU host's copy has no .git; revision given when rendering)"
            if git_rev and not first.git_revision
            else ""
        ),
        f"- date: {first.started}",
        "- command: `OUT=$OUT bash scripts/gpu/quantize_3b.sh` (vLLM 0.25 + ModelOpt 0.47 "
        "staged with shared/gpu-host)",
        "",
        "What ran: `vlmquant make-tiny --shape 3b` (the exact Qwen2.5-VL-3B-Instruct shapes, "
        "random weights — no model hub on the GPU host), the 4096-caption demo calib set "
        "(synthetic captions; COCO is not on the host), both recipes' quantization at "
        "`--calib-size 4096 --calib-seq 512`, and vLLM loading each export with a text and "
        "an image prompt. " + (res / "make_tiny.txt").read_text().strip() + ".",
        "",
        "## Time per step and peak memory",
        "",
        "| variant | calibration | batch | load s | quantize + calibrate s | export s "
        "| unify scales s | total s | peak GPU MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    peaks = {r.memory.get("peak_cuda_allocated_mib") for r in runs.values()}
    for v, r in runs.items():
        c, t = r.calibration, r.timings_s
        lines.append(
            f"| {VARIANTS[v]} | {calibration_text(c)} "
            f"| {c.batch_size} | {t['load']} | {t['quantize_and_calibrate']} "
            f"| {t['export']} | {t.get('unify_fused_scales', '-')} | {t['total']} "
            f"| {r.memory.get('peak_cuda_allocated_mib', '-')} |"
        )
    if len(runs) > 1 and len(peaks) == 1:
        lines += [
            "",
            "The peak GPU memory is identical in every run, whatever the calibration "
            "data, which points at ModelOpt's batch-size probe (`get_max_batch_size`, used "
            "when `--batch-size` is 0) rather than calibration itself; not broken down "
            "further.",
        ]
    if "long" in runs:
        secs = runs["long"].timings_s["quantize_and_calibrate"]
        c = runs["long"].calibration
        verdict = "met" if secs < 90 else "missed"
        lines += [
            "",
            f"Goal: calibration of 4096 x 512 tokens under 90 s — **{verdict}**: "
            f"{secs} s for quantizer insertion + max calibration over {c.samples} texts each "
            f"cut at {c.max_seq} tokens ({c.batches} batches). The caption runs are "
            "shorter because captions are short texts.",
        ]
    lines += [
        "",
        "## Checkpoint sizes",
        "",
        "| checkpoint | format | GiB (safetensors) | BF16 GiB | FP8 GiB |",
        "|---|---|---|---|---|",
    ]
    for name in ("random", "fp8_fp8_demo", "fp8_fp8_demo_vlm"):
        p = res / f"inspect_{name}.json"
        if p.exists():
            s = Inspect.read(p)
            by = s.by_dtype
            lines.append(
                f"| {name} | {s.format} | {s.safetensors_gib:.3f} "
                f"| {by.get('BF16', {}).get('bytes', 0) / 2**30:.3f} "
                f"| {by.get('F8_E4M3', {}).get('bytes', 0) / 2**30:.3f} |"
            )
    lines += [
        "",
        "Fused-scale unification (q/k/v and gate/up shards requantized to one weight "
        "scale, as vLLM's GPU build does at load):",
        "",
    ]
    for v, r in runs.items():
        f = r.fused_scales
        lines.append(
            f"- {VARIANTS[v]}: {f.get('groups')} groups, {f.get('shards_requantized')} "
            f"shards requantized, largest scale increase "
            f"{100 * f.get('max_relative_scale_increase', 0):.1f}%"
        )
    lines += [
        "",
        "## vLLM loads both exports",
        "",
        "| checkpoint | vLLM | linear method | KV cache | KV blocks | load s | prompts answered |",
        "|---|---|---|---|---|---|---|",
    ]
    engines = []
    for name in ("fp8_fp8_demo", "fp8_fp8_demo_vlm"):
        failed = res / f"vllm_{name}.failed.txt"  # the engine's error, when it did not load
        if failed.exists():
            lines.append(f"| {name} | failed: {failed.read_text()[-200:]} | | | | | |")
        if not (res / f"vllm_{name}.json").exists():
            continue
        r = Generation.read(res / f"vllm_{name}.json")
        engines.append(r)
        u = r.used
        answered = ", ".join(
            f"{'image' if x.image else 'text'}: {len(x.token_ids)} tok "
            f"({x.prompt_tokens}-token prompt)"
            for x in r.results
        )
        lines.append(
            f"| {name} | {r.vllm_version} | {u.quantization} "
            f"| {u.kv_cache_dtype} | {u.num_gpu_blocks} | {r.load_s} "
            f"| {answered} |"
        )
    settings = ", ".join(
        f"`{k}={engines[0].engine[k]}`"
        for k in ("enforce_eager", "gpu_memory_utilization", "max_model_len")
        if engines and k in engines[0].engine
    )
    sampling = engines[0].sampling if engines else {}
    lines += [
        "",
        f"Engine settings (from the run): {settings or 'not recorded'}; sampling "
        f"{', '.join(f'{k}={v}' for k, v in sampling.items()) or 'not recorded'}. The weights "
        "are random, so the replies are token soup (mostly ids beyond the small tokenizer, "
        "decoding to empty text); the check is that the engine loads the FP8 layers and "
        "generates.",
        "",
        "## Not run here",
        "",
        "- the real Qwen2.5-VL-3B-Instruct weights and COCO 2017 captions/images (neither "
        "is reachable from this workplace); sizes match the real checkpoint's shapes, "
        "calibration statistics do not;",
        "- the upstream hf_ptq.py parity route (needs the extern/Model-Optimizer checkout).",
        "",
    ]
    return "\n".join(lines)
