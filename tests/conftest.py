"""Shared fixtures: the tiny real Qwen2.5-VL (built once per session) and a CLI runner."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub here: anything that downloads must fail
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.helpers import INFER_MAX_TOKENS  # noqa: E402
from vlmquant.cli import main  # noqa: E402


@pytest.fixture
def cli(capsys):
    """Run `vlmquant ARGS` in-process; returns (exit code, stderr)."""

    def run(*args) -> tuple[int, str]:
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse usage errors
            code = e.code
        return code, capsys.readouterr().err

    return run


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models") / "tiny"
    assert main(["make-tiny", "--out", str(out), "--seed", "0"]) == 0
    return out


@pytest.fixture(scope="session")
def demo_calib(tmp_path_factory) -> Path:
    """64 synthetic captions with drawn pictures (demo_captions_images/ beside the .txt)."""
    out = tmp_path_factory.mktemp("calib") / "demo_captions.txt"
    assert main(["calib", "--demo", "--num-samples", "64", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def quantized(tiny_model, demo_calib, tmp_path_factory):
    """Build (once per session) and return the tiny model quantized with the given settings."""
    built: dict[tuple, Path] = {}

    def get(*flags: str) -> Path:
        if flags not in built:
            out = tmp_path_factory.mktemp("quantized") / "ckpt"
            images = demo_calib.with_name("demo_captions_images")
            args = [
                "quantize",
                "--model",
                str(tiny_model),
                "--calib",
                str(demo_calib),
                "--calib-size",
                "64",
                "--out",
                str(out),
                *flags,
            ]
            if "full" in flags or "image-text" in flags:
                args += ["--images", str(images)]
            assert main(args) == 0
            built[flags] = out
        return built[flags]

    return get


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory) -> Path:
    """The trained Qwen2.5-Coder-0.5B-Instruct inside Qwen2.5-VL (make-tiny --lm), built once:
    the model where fidelity numbers mean something."""
    out = tmp_path_factory.mktemp("models") / "trained"
    assert main(["make-tiny", "--lm", "qwen2.5-coder-0.5b-instruct", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def infer_runs(tiny_model, quantized, tmp_path_factory):
    """`infer` on the tiny model: BF16, FP8 (with --compare) and vision FP8, greedy."""
    root = tmp_path_factory.mktemp("infer")
    runs = {
        "bf16": (tiny_model, []),
        "fp8": (quantized(), ["--compare", str(tiny_model)]),
        "fp8_vision": (quantized("--scope", "full"), []),
    }
    for name, (model, extra) in runs.items():
        args = [
            "infer",
            "--model",
            str(model),
            "--out-dir",
            str(root / name),
            "--max-tokens",
            str(INFER_MAX_TOKENS),
            "--max-model-len",
            "1024",
            "--enforce-eager",
            *extra,
        ]
        assert main(args) == 0, name
    return root
