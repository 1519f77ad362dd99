"""The parts of a Qwen2.5-VL checkpoint make-tiny builds: its byte-level BPE tokenizer (trained
on the shipped paragraphs), chat template, config for a shape, processor and generation config."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


TOKENIZER_VOCAB = 2048


def training_text() -> list[str]:
    """Text the tokenizer is trained on: shipped paragraphs, prompts and demo captions."""
    from vlmquant.synthetic import demo_captions, paragraphs

    data = resources.files("vlmquant.data")
    lines = paragraphs()
    lines += [
        json.loads(x)["text"]
        for x in data.joinpath("prompts.jsonl").read_text().split("\n")
        if x.strip()
    ]
    lines += [text for _, text, _ in demo_captions()]
    return lines


def build_tokenizer():
    """Byte-level BPE with Qwen's special tokens, wrapped as transformers' Qwen2Tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(training_text(), trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tok = Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    tok.chat_template = chat_template()
    tok.model_max_length = 32768
    return tok


def chat_template() -> str:
    return resources.files("vlmquant.data").joinpath("chat_template.jinja").read_text()


def build_config(spec: dict[str, Any], tok) -> Any:
    from transformers import Qwen2_5_VLConfig

    text = dict(spec["text"])
    mrope = text.pop("mrope_section")
    theta = text.pop("rope_theta", 1000000.0)
    eps = text.pop("rms_norm_eps", 1e-6)
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text["vocab_size"] = text["vocab_size"] or len(tok)
    text.update(
        rope_parameters={"rope_type": "default", "rope_theta": theta, "mrope_section": mrope},
        rms_norm_eps=eps,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        initializer_range=spec["init_std"],
        use_sliding_window=False,
        max_window_layers=text["num_hidden_layers"],
        dtype="bfloat16",
    )
    vision = dict(
        spec["vision"],
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        tokens_per_second=2,
        in_channels=3,
        hidden_act="silu",
        initializer_range=spec["init_std"],
    )
    cfg = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=spec.get("tie_word_embeddings", True),
    )
    cfg.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    cfg.dtype = "bfloat16"
    return cfg


def build_processor(spec: dict[str, Any], tok):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    min_pixels, max_pixels = spec["pixels"]
    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    common = dict(size=size, patch_size=14, temporal_patch_size=2, merge_size=2)
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**common),
        video_processor=Qwen2VLVideoProcessor(**common),
        tokenizer=tok,
        chat_template=chat_template(),
    )


def generation_config(config, tok):
    from transformers import GenerationConfig

    return GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        pad_token_id=tok.pad_token_id,
        eos_token_id=[
            tok.convert_tokens_to_ids("<|im_end|>"),
            tok.convert_tokens_to_ids("<|endoftext|>"),
        ],
        do_sample=False,
    )


def parameter_count(config) -> int:
    """Parameters of the architecture for `config`, counted on the meta device (no memory)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(config)
    return sum(p.numel() for p in model.parameters())
