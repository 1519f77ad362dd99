"""Tensor parallelism: the head-split rules vLLM needs, checked before any engine starts."""

from __future__ import annotations

import json

import pytest

from vlmquant.checkpoint.quant import tensor_parallel_problems


def _config(shape: str) -> dict:
    from vlmquant.tiny.build import build_config, build_tokenizer
    from vlmquant.tiny.shapes import SHAPES

    return build_config(SHAPES[shape], build_tokenizer()).to_dict()


@pytest.mark.parametrize(
    ("shape", "ok", "bad"),
    [("3b", [2, 4, 8], [3]), ("7b", [2, 4], [8]), ("32b", [2, 4, 8], [3]), ("72b", [2, 4, 8], [3])],
)
def test_head_split_rules_on_the_real_shapes(shape, ok, bad):
    """Text heads split evenly, KV heads split or are replicated (3B: 2 KV heads over 8 GPUs),
    the vision tower's 16 heads split evenly; 7B's 28 heads do not split over 8."""
    config = _config(shape)
    for tp in ok:
        assert tensor_parallel_problems(config, tp) == [], (shape, tp)
    for tp in bad:
        problems = tensor_parallel_problems(config, tp)
        assert problems and "heads" in problems[0], (shape, tp)


def test_bad_tensor_parallel_sizes_are_one_line_exit_2(tiny_model, quantized, tmp_path, cli):
    """The tiny model has 4 heads (2 KV heads) and 2 vision heads; this machine has no GPU."""
    cases = [
        (["infer", "--model", tiny_model, "--out-dir", tmp_path / "i"], "3", "not divisible"),
        (["infer", "--model", tiny_model, "--out-dir", tmp_path / "i"], "2", "0 visible"),
        (["serve", "--model", tiny_model], "2", "0 visible"),
        (["bench", "--model", tiny_model, "--out", tmp_path / "b.json"], "0", "at least 1"),
        (
            [
                "eval",
                "--base",
                tiny_model,
                "--quantized",
                quantized(),
                "--out",
                tmp_path / "e.json",
            ],
            "2",
            "0 visible",
        ),
    ]
    for args, tp, says in cases:
        code, err = cli(*args, "--tensor-parallel-size", tp)
        assert code == 2 and says in err and err.count("\n") == 1, (args, tp, err)
    assert not any(tmp_path.iterdir())
    # --print-command may show a TP command for another machine, if the heads allow it
    code, err = cli(
        "serve", "--model", tiny_model, "--tensor-parallel-size", "2", "--print-command"
    )
    assert code == 0, err


def test_check_vllm_names_an_unsplittable_size(tiny_model, capsys):
    from vlmquant.cli import main

    assert main(["check-vllm", "--json", "--tensor-parallel-size", "3", str(tiny_model)]) == 2
    verdict = json.loads(capsys.readouterr().out)
    rules = {f["rule"]: f for f in verdict["findings"]}
    assert (
        "tensor-parallel" in rules and "4 attention heads" in rules["tensor-parallel"]["tensors"][0]
    )
    assert main(["check-vllm", "--tensor-parallel-size", "2", str(tiny_model)]) == 0
