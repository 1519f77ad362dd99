"""Careless and hostile inputs, stage by stage: each is exit 2 with one line that names the
input, no traceback, nothing written at the output path and the input unchanged.

One broken copy of the tiny model per case (a few MB each); every stage refuses before it
loads a model, so the whole file runs in seconds."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file


def folder_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            h.update(f.relative_to(folder).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def _weights(d: Path) -> Path:
    return d / "model.safetensors"


def zero_bytes(d: Path) -> str:
    _weights(d).write_bytes(b"")
    return "not a complete safetensors file (0 bytes)"


def truncated(d: Path) -> str:
    data = _weights(d).read_bytes()
    _weights(d).write_bytes(data[: len(data) // 2])
    return "truncated"


def random_bytes(d: Path) -> str:
    _weights(d).write_bytes(os.urandom(4096))
    return "not a complete safetensors file"


def config_not_json(d: Path) -> str:
    (d / "config.json").write_text("{ this is not json")
    return "config.json: not a readable JSON file"


def missing_tensor(d: Path) -> str:
    state = load_file(_weights(d))
    name = next(k for k in state if k.endswith("mlp.down_proj.weight"))
    del state[name]
    save_file(state, _weights(d), metadata={"format": "pt"})
    return "parameter(s) missing from the safetensors"


def wrong_shape(d: Path) -> str:
    state = load_file(_weights(d))
    name = next(k for k in state if k.endswith("self_attn.o_proj.weight"))
    state[name] = state[name][:, :-1].contiguous()
    save_file(state, _weights(d), metadata={"format": "pt"})
    return f"tensor {name} has shape"


def foreign_tensor(d: Path) -> str:
    state = load_file(_weights(d))
    state["model.layers.0.mlp.extra_proj.weight"] = torch.zeros(4, 4, dtype=torch.bfloat16)
    save_file(state, _weights(d), metadata={"format": "pt"})
    return "the architecture does not have, e.g. model.layers.0.mlp.extra_proj.weight"


def no_tokenizer(d: Path) -> str:
    (d / "tokenizer.json").unlink()
    return "no tokenizer.json or vocab.json"


def fp8_without_config(d: Path) -> str:
    state = load_file(_weights(d))
    name = next(k for k in state if k.endswith("mlp.up_proj.weight"))
    state[name] = state[name].to(torch.float8_e4m3fn)
    save_file(state, _weights(d), metadata={"format": "pt"})
    return "no quantization config"


BREAKS = [
    zero_bytes,
    truncated,
    random_bytes,
    config_not_json,
    missing_tensor,
    wrong_shape,
    foreign_tensor,
    no_tokenizer,
    fp8_without_config,
]


@pytest.fixture(scope="module")
def broken(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("broken")
    made = {}
    for brk in BREAKS:
        d = root / brk.__name__
        shutil.copytree(tiny_model, d)
        made[brk.__name__] = (d, brk(d), folder_digest(d))
    return made


def stage_args(stage: str, model: Path, out: Path, demo_calib: Path, good: Path) -> list:
    return {
        "quantize": ["quantize", "--model", model, "--calib", demo_calib, "--out", out],
        "eval-base": ["eval", "--base", model, "--quantized", good, "--out", out, "--no-vllm"],
        "infer": ["infer", "--model", model, "--out-dir", out],
        "bench": ["bench", "--model", model, "--out", out],
        "serve": ["serve", "--model", model, "--print-command"],
    }[stage]


@pytest.mark.parametrize("stage", ["quantize", "eval-base", "infer", "bench", "serve"])
@pytest.mark.parametrize("case", [b.__name__ for b in BREAKS])
def test_a_broken_checkpoint_is_one_line_exit_2(
    broken, stage, case, demo_calib, quantized, cli, capsys, tmp_path
):
    good = quantized()
    capsys.readouterr()  # the fixtures' own output
    model, message, digest = broken[case]
    out = tmp_path / "out.json"
    code, err = cli(*stage_args(stage, model, out, demo_calib, good))
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert folder_digest(model) == digest  # the input is untouched


def test_quantize_refuses_an_export_and_eval_a_bf16_quantized(
    quantized, tiny_model, demo_calib, cli, tmp_path
):
    export, digest = quantized(), folder_digest(quantized())
    code, err = cli("quantize", "--model", export, "--calib", demo_calib, "--out", tmp_path / "q")
    assert code == 2 and "a quantized export" in err and folder_digest(export) == digest
    code, err = cli(
        "eval",
        "--base",
        tiny_model,
        "--quantized",
        tiny_model,
        "--out",
        tmp_path / "e.json",
        "--no-vllm",
    )
    assert code == 2 and "--no-expect-quantized" in err
    assert list(tmp_path.iterdir()) == []


def test_bench_force_keeps_the_old_result_when_the_new_run_is_bad(tiny_model, cli, tmp_path):
    out = tmp_path / "bench.json"
    out.write_text(json.dumps({"old": True}))
    code, err = cli("bench", "--model", tiny_model, "--out", out, "--force", "--modes", "nope")
    assert code == 2 and json.loads(out.read_text()) == {"old": True}
    code, err = cli("bench", "--serve", "--model", tiny_model, "--out", out, "--force")
    assert code == 2 and "contains 'serve'" in err and json.loads(out.read_text()) == {"old": True}


def test_a_second_run_on_a_busy_output_fails_fast_and_a_stale_lock_is_taken_over(cli, tmp_path):
    import subprocess

    out = tmp_path / "tiny"
    other = subprocess.Popen(["sleep", "60"])  # stands in for a live run writing `out`
    try:
        (tmp_path / ".tiny.lock").write_text(str(other.pid))
        theirs = tmp_path / ".tiny.tmp-theirs"
        theirs.mkdir()
        code, err = cli("make-tiny", "--out", out)
        assert code == 2 and f"another run (pid {other.pid})" in err
        assert theirs.is_dir() and not out.exists()  # the live run's temp folder is kept
    finally:
        other.kill()
        other.wait()
    code, err = cli("make-tiny", "--out", out)  # its process is gone: the lock is stale
    assert code == 0, err
    assert out.is_dir() and not list(tmp_path.glob(".tiny.*"))


def test_a_prompt_image_that_is_not_an_image_is_found_before_any_engine(tiny_model, cli, tmp_path):
    fake = tmp_path / "photo.png"
    fake.write_text("not a picture")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"text": "What is this?", "image": str(fake)}) + "\n")
    out = tmp_path / "samples"
    code, err = cli("infer", "--model", tiny_model, "--prompts", prompts, "--out-dir", out)
    assert code == 2 and "photo.png is not a readable image" in err and "line 1" in err
    assert not out.exists()


# Careless inputs found by a CLI audit (this session's second round); each is one line, exit 2,
# before any model loads or engine starts, and nothing is written.
CARELESS = [
    (["make-tiny", "--seed", "x"], "--seed: invalid int value"),
    (["make-tiny", "--seed", "-1"], "--seed -1: must be at least 0"),
    (["quantize", "--qformat", "fp8_pc"], "invalid choice"),
    (["quantize", "--calib-size", "0"], "--calib-size 0: must be at least 1"),
    (["infer", "--max-tokens", "0"], "--max-tokens 0: must be at least 1"),
    (["infer", "--top-p", "1.5"], "--top-p 1.5: must be between 0 and 1"),
    (["eval", "--gpu-memory-utilization", "2"], "must be between 0.01 and 1"),
    (["eval", "--max-model-len", "0"], "--max-model-len 0: must be at least 1"),
    (["bench", "--repeats", "0"], "--repeats 0: must be at least 1"),
    (["bench", "--concurrency", "4", "0"], "--concurrency 0: must be at least 1"),
    (["serve", "--port", "0"], "--port 0: must be between 1 and 65535"),
    (["check-vllm", "--tensor-parallel-size", "0", "x"], "must be at least 1"),
    (["sensitivity", "--kernels", "foo"], "invalid choice"),
    (["calib", "--demo", "--num-samples", "0"], "must be at least 1"),
]


@pytest.mark.parametrize(("args", "says"), CARELESS, ids=[" ".join(a) for a, _ in CARELESS])
def test_careless_flags_are_one_line_exit_2(args, says, cli):
    code, err = cli(*args)
    assert code == 2 and says in err and err.count("\n") == 1, err


def test_ranges_hold_for_recipes_too(tmp_path, cli):
    recipe = tmp_path / "r.toml"
    recipe.write_text("[infer]\nmax_tokens = 0\n")
    code, err = cli("infer", "--recipe", recipe)
    assert code == 2 and "--max-tokens 0: must be at least 1" in err


def test_an_output_folder_that_cannot_be_written_is_refused_first(tiny_model, demo_calib, cli):
    """/proc exists, and root passes every permission check, yet nothing can be created there:
    the check is a real write, made before any work."""
    for args in (
        ["sensitivity", "--base", tiny_model, "--calib", demo_calib, "--out", "/proc/x.json"],
        [
            "eval",
            "--base",
            tiny_model,
            "--quantized",
            tiny_model,
            "--no-expect-quantized",
            "--out",
            "/proc/x.json",
        ],  # fmt: skip
        ["calib", "--demo", "--num-samples", "4", "--out", "/proc/x/c.txt"],
    ):
        code, err = cli(*args)
        assert code == 2 and "cannot be written" in err and err.count("\n") == 1, (args, err)


def test_prompts_that_are_not_utf8(tiny_model, tmp_path, cli):
    bad = tmp_path / "p.jsonl"
    bad.write_bytes(b"\xff\xfe{}")
    code, err = cli("infer", "--model", tiny_model, "--out-dir", tmp_path / "o", "--prompts", bad)
    assert code == 2 and "not UTF-8" in err and not (tmp_path / "o").exists()


def test_no_output_may_land_on_an_input_even_with_force(
    tiny_model, quantized, demo_calib, tmp_path, cli
):
    """The audit's data-loss cases: eval, infer and bench writing into or over their own
    inputs (with --force) used to replace a checkpoint's config.json, weights or whole folder.
    Copies, so a regression cannot destroy the session's fixtures."""
    import shutil

    from vlmquant.core.runinfo import sha256_file

    base, export = tmp_path / "base", tmp_path / "export"
    shutil.copytree(tiny_model, base)
    shutil.copytree(quantized(), export)
    calib = tmp_path / "c.txt"
    shutil.copy(demo_calib, calib)
    files = [base / "config.json", base / "model.safetensors", export / "model.safetensors", calib]
    before = {f: sha256_file(f) for f in files}
    cases = [
        ["eval", "--base", base, "--quantized", export, "--out", base / "config.json"],
        ["eval", "--base", base, "--quantized", export, "--out", export / "model.safetensors"],
        ["eval", "--base", base, "--quantized", export, "--calib", calib, "--out", calib],
        ["infer", "--model", base, "--out-dir", base],
        ["infer", "--model", export, "--compare", base, "--out-dir", base / "samples"],
        ["bench", "--model", export, "--out", export / "config.json"],
    ]
    for args in cases:
        code, err = cli(*args, "--force")
        assert code == 2 and "write the output somewhere else" in err, (args, err)
        assert err.count("\n") == 1, err
    assert {f: sha256_file(f) for f in files} == before
    assert sorted(p.name for p in base.iterdir()) == sorted(p.name for p in tiny_model.iterdir())


def test_a_calib_set_is_a_txt_and_a_sensitivity_export_is_of_its_base(
    tiny_model, quantized, trained_free_other, tmp_path, cli
):
    config = tmp_path / "ckpt" / "config.json"
    config.parent.mkdir()
    config.write_text("{}")
    code, err = cli("calib", "--demo", "--num-samples", "4", "--out", config, "--force")
    assert code == 2 and "ending in .txt" in err and config.read_text() == "{}"
    code, err = cli("sensitivity", "--base", trained_free_other, "--quantized", quantized(),
                    "--out", tmp_path / "s.json")  # fmt: skip
    assert code == 2 and "differ in" in err and err.count("\n") == 1, err


@pytest.fixture
def trained_free_other(tmp_path):
    """Another BF16 model of the same architecture, weights and tensor shapes but other heads
    (2 heads of 64 instead of 4 of 32): the contract passes it, only the comparison can tell."""
    from vlmquant.cli import main

    out = tmp_path / "other"
    assert main(["make-tiny", "--out", str(out), "--seed", "1"]) == 0
    import json

    cfg = json.loads((out / "config.json").read_text())
    cfg["text_config"].update(num_attention_heads=2, num_key_value_heads=1)
    (out / "config.json").write_text(json.dumps(cfg))
    return out


def test_an_export_without_hf_quant_config_is_still_an_export(quantized, tiny_model, tmp_path, cli):
    """vLLM reads config.json's quantization_config when hf_quant_config.json is absent; the
    eval used to load such an export's FP8 codes as plain weights and report numbers for it."""
    import json
    import shutil

    export = tmp_path / "noqc"
    shutil.copytree(quantized(), export)
    (export / "hf_quant_config.json").unlink()
    kld = {}
    for name, ckpt in (("full", quantized()), ("noqc", export)):
        out = tmp_path / f"{name}.json"
        code, err = cli("eval", "--base", tiny_model, "--quantized", ckpt, "--out", out,
                        "--no-vllm", "--max-samples", "6", "--image-samples", "0")  # fmt: skip
        assert code == 0, err
        kld[name] = json.loads(out.read_text())["groups"]["text"]["kld_mean"]
    assert kld["noqc"] == kld["full"]


def test_a_recipe_list_of_numbers_holds_numbers(tiny_model, tmp_path, cli):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[bench]\nconcurrency = "many"\n')
    code, err = cli(
        "bench", "--recipe", recipe, "--model", tiny_model, "--out", tmp_path / "b.json"
    )
    assert code == 2 and "must be a list of integers" in err and err.count("\n") == 1, err
    recipe.write_text("[bench]\nconcurrency = 0\n")
    code, err = cli(
        "bench", "--recipe", recipe, "--model", tiny_model, "--out", tmp_path / "b.json"
    )
    assert code == 2 and "--concurrency 0: must be at least 1" in err, err
