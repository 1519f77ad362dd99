"""hf_ptq parity: upstream ModelOpt hf_ptq.py, run unchanged, against `vlmquant quantize`.

Needs an hf_ptq checkout: $VLMQUANT_HF_PTQ (.ci/run points it at ../shared/extern/Model-Optimizer)
or extern/Model-Optimizer. Without one the parity tests skip with the reason, except under CI,
where they fail: CI must always run them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from vlmquant.parity.parity_stage import DEFAULT_HF_PTQ, ENV_HF_PTQ, HF_PTQ_FOLDERS

REPO = Path(__file__).resolve().parents[1]


def _hf_ptq_root() -> Path | None:
    root = Path(os.environ.get(ENV_HF_PTQ) or REPO / DEFAULT_HF_PTQ)
    return root if any((root / s / "hf_ptq.py").is_file() for s in HF_PTQ_FOLDERS) else None


@pytest.fixture(scope="module")
def hf_ptq() -> Path:
    root = _hf_ptq_root()
    if root is None:
        why = (
            f"no hf_ptq checkout: set ${ENV_HF_PTQ} or clone Model-Optimizer into "
            f"{DEFAULT_HF_PTQ} (extern/README.md); the hf_ptq parity tests did NOT run"
        )
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return root


@pytest.fixture(scope="module")
def calib_jsonl(demo_calib) -> Path:
    return demo_calib.with_suffix(".jsonl")


@pytest.fixture(scope="module")
def parity_runs(hf_ptq, tiny_model, calib_jsonl, tmp_path_factory):
    """One parity run per setting, built on first use."""
    from vlmquant.cli import main

    runs: dict[tuple, Path] = {}

    def get(*flags: str) -> Path:
        if flags not in runs:
            out = tmp_path_factory.mktemp("parity") / "run"
            args = ["parity", "--model", tiny_model, "--calib", calib_jsonl, "--hf-ptq", hf_ptq]
            assert main([str(a) for a in [*args, "--out", out, "--device", "cpu", *flags]]) == 0
            runs[flags] = out
        return runs[flags]

    return get


# Each KV format, and between them: truncation (--calib-seq 8 cuts most demo captions) and a
# batch size that does not divide the set (64 samples in batches of 7).
@pytest.mark.parametrize(
    "flags",
    [
        ("--kv-cache-qformat", "fp8", "--calib-size", "64"),
        ("--kv-cache-qformat", "fp8_cast", "--calib-size", "64", "--calib-seq", "8"),
        ("--kv-cache-qformat", "none", "--calib-size", "64", "--batch-size", "7"),
    ],
)
def test_quantize_export_is_hf_ptq_export_bit_for_bit(parity_runs, flags):
    out = parity_runs(*flags)
    record = json.loads((out / "parity.json").read_text())
    diff = record["diff"]
    assert diff["tensors"]["changed"] == [], diff["tensors"]["changed"][:3]
    assert diff["tensors"]["only_in_a"] == diff["tensors"]["only_in_b"] == []
    assert diff["configs"] == {"hf_quant_config.json": [], "config.json": []}
    assert diff["identical"]
    state = load_file(out / "hf_ptq" / "model.safetensors")
    has_k_scale = any(k.endswith("k_proj.k_scale") for k in state)
    assert has_k_scale == (flags[1] == "fp8")  # fp8_cast and none export no KV scales
    assert sum(v.dtype == torch.float8_e4m3fn for v in state.values()) > 0
    batch = int(flags[flags.index("--batch-size") + 1]) if "--batch-size" in flags else 16
    assert record["batch_size"] == {"hf_ptq": batch, "vlmquant": batch}


def test_diff_names_the_scale_that_differs(parity_runs, tmp_path, capsys):
    """The verdict is not a constant: change one scale of the upstream export and inspect --diff
    reports that tensor and its ratio."""
    ours = parity_runs("--kv-cache-qformat", "fp8", "--calib-size", "64") / "vlmquant"
    other = tmp_path / "other"
    shutil.copytree(ours, other)
    state = load_file(other / "model.safetensors")
    name = "model.layers.1.self_attn.k_proj.k_scale"
    state[name] = state[name] * 1.5
    save_file(state, other / "model.safetensors", metadata={"format": "pt"})
    from vlmquant.cli import main

    capsys.readouterr()
    assert main(["inspect", str(ours), "--diff", str(other), "--json"]) == 0
    diff = json.loads(capsys.readouterr().out)
    assert not diff["identical"]
    [change] = diff["tensors"]["changed"]
    assert change["name"] == name and change["ratio"] == pytest.approx(1.5)


def test_parity_bad_input(hf_ptq, tiny_model, calib_jsonl, demo_calib, tmp_path, cli):
    no_text = tmp_path / "no_text.jsonl"
    no_text.write_text('{"caption": "a dog"}\n')
    stale = tmp_path / "stale"
    (stale / "examples" / "hf_ptq").mkdir(parents=True)
    # an hf_ptq.py from another ModelOpt: it imports a module the installed wheel lacks
    (stale / "examples" / "hf_ptq" / "hf_ptq.py").write_text(
        "from modelopt.torch.no_such_module import thing\n"
    )
    base = ["parity", "--model", tiny_model, "--device", "cpu", "--calib-size", "8"]
    cases = [
        (["--calib", calib_jsonl, "--hf-ptq", hf_ptq, "--scope", "full"], "--scope full"),
        (["--calib", demo_calib, "--hf-ptq", hf_ptq], "reads a .jsonl"),
        (["--calib", no_text, "--hf-ptq", hf_ptq], 'no "text" string'),
        (["--calib", calib_jsonl, "--hf-ptq", tmp_path], "no hf_ptq.py in it"),
        (["--calib", calib_jsonl, "--hf-ptq", stale], "does not import"),
    ]
    for i, (flags, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        code, err = cli(*base, *flags, "--out", out)
        assert code == 2, (flags, err)
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()
