"""make-tiny builds a real, deterministic Qwen2.5-VL that transformers loads and runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vlmquant.core.runinfo import sha256_file
from vlmquant.tiny.build import SPECIAL_TOKENS


def test_same_seed_gives_identical_safetensors(tiny_model, tmp_path, cli):
    assert cli("make-tiny", "--out", tmp_path / "again", "--seed", 0)[0] == 0
    assert cli("make-tiny", "--out", tmp_path / "other", "--seed", 1)[0] == 0
    first = sha256_file(tiny_model / "model.safetensors")
    assert sha256_file(tmp_path / "again" / "model.safetensors") == first
    assert sha256_file(tmp_path / "other" / "model.safetensors") != first


def test_config_has_the_features_the_pipeline_relies_on(tiny_model):
    cfg = json.loads((tiny_model / "config.json").read_text())
    text, vision = cfg["text_config"], cfg["vision_config"]
    assert cfg["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    assert text["hidden_size"] >= 64 and text["num_hidden_layers"] >= 2
    assert (text["hidden_size"] // text["num_attention_heads"]) % 32 == 0
    assert text["num_key_value_heads"] < text["num_attention_heads"]
    assert sum(text["rope_parameters"]["mrope_section"]) * 2 == (
        text["hidden_size"] // text["num_attention_heads"]
    )
    assert vision["depth"] >= 2 and vision["out_hidden_size"] == text["hidden_size"]
    assert vision["fullatt_block_indexes"]


def test_existing_output_needs_force(tiny_model, cli):
    code, err = cli("make-tiny", "--out", tiny_model)
    assert code == 2 and "--force" in err and err.count("\n") == 1


def test_tokenizer_processor_and_generation(tiny_model):
    from PIL import Image
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    processor = AutoProcessor.from_pretrained(tiny_model)
    tok = processor.tokenizer
    for token in SPECIAL_TOKENS:
        ids = tok.encode(token, add_special_tokens=False)
        assert len(ids) == 1, token
    assert tok.decode(tok.encode("Hello, quantized world!")) == "Hello, quantized world!"
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.endswith(
        "<|vision_start|><|image_pad|><|vision_end|>What is this?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model)
    inputs = processor(
        text=[prompt], images=[Image.new("RGB", (112, 112), (200, 30, 30))], return_tensors="pt"
    )
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 8

    # the video processor (needs a working torchvision) is part of the saved processor
    video = np.zeros((4, 56, 56, 3), dtype=np.uint8)
    vprompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Hi"}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    vin = processor(text=[vprompt], videos=[video], return_tensors="pt")
    assert vin["pixel_values_videos"].ndim == 2 and torch.all(vin["video_grid_thw"] > 0)


@pytest.mark.parametrize("bad", [["--shape", "13b"], ["--device", "tpu"]])
def test_bad_flags_are_usage_errors(cli, tmp_path, bad):
    code, err = cli("make-tiny", "--out", tmp_path / "x", *bad)
    assert code == 2 and "invalid choice" in err
    assert not (tmp_path / "x").exists()


def test_quiet_by_default_library_output_in_a_log(tmp_path, capsys):
    from vlmquant.cli import main

    assert main(["make-tiny", "--out", str(tmp_path / "m")]) == 0
    cap = capsys.readouterr()
    assert cap.err == "" and cap.out.count("\n") == 1, cap
    assert "Writing model shards" in (tmp_path / "m.make-tiny.log").read_text()


def test_big_shapes_are_the_real_checkpoints_and_refuse_a_disk_too_small(tmp_path, cli):
    """7B / 32B / 72B: the published Qwen2.5-VL-Instruct shapes (counted on the meta device);
    a build whose BF16 weights do not fit the disk is exit 2 before anything is written."""
    from vlmquant.tiny.build import build_config, build_tokenizer, parameter_count
    from vlmquant.tiny.shapes import SHAPES

    tok = build_tokenizer()
    billions = {
        s: parameter_count(build_config(SHAPES[s], tok)) / 1e9 for s in ("7b", "32b", "72b")
    }
    assert 8.2 < billions["7b"] < 8.4 and 33 < billions["32b"] < 34 and 73 < billions["72b"] < 74
    code, err = cli("make-tiny", "--shape", "72b", "--out", tmp_path / "big", "--device", "cpu")
    assert code == 2 and "GiB" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
