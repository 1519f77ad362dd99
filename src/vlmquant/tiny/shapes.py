"""The Qwen2.5-VL shapes make-tiny builds: the tiny test model, and the exact shapes of the
3B, 7B, 32B and 72B Instruct checkpoints (hidden size, layers, heads, intermediate size)."""

from __future__ import annotations

from typing import Any

SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {
        "text": dict(
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            mrope_section=[4, 6, 6],
            vocab_size=None,
        ),
        "vision": dict(
            depth=2,
            hidden_size=64,
            intermediate_size=128,
            num_heads=2,
            out_hidden_size=128,
            fullatt_block_indexes=[1],
            window_size=112,
        ),
        # small images keep CPU tests fast: at most 112x112 pixels -> 16 merged image tokens
        "pixels": (28 * 28 * 4, 28 * 28 * 16),
        # wide enough that a random model's greedy tokens vary (0.02 repeats one token), so
        # token-for-token comparisons between engines mean something
        "init_std": 0.2,
    },
    "3b": {
        "text": dict(
            hidden_size=2048,
            intermediate_size=11008,
            num_hidden_layers=36,
            num_attention_heads=16,
            num_key_value_heads=2,
            max_position_embeddings=128000,
            mrope_section=[16, 24, 24],
            vocab_size=151936,
        ),
        "vision": dict(
            depth=32,
            hidden_size=1280,
            intermediate_size=3420,
            num_heads=16,
            out_hidden_size=2048,
            fullatt_block_indexes=[7, 15, 23, 31],
            window_size=112,
        ),
        "pixels": (3136, 12845056),  # Qwen2.5-VL-3B-Instruct's preprocessor defaults
        "init_std": 0.02,
    },
}


def _big(hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int) -> dict[str, Any]:
    """The larger Qwen2.5-VL-Instruct checkpoints: the 3B's vision tower (its output projected to
    the language model's width), vocabulary 152064, untied embeddings, head dim 128."""
    big = SHAPES["3b"]
    return {
        "text": dict(
            big["text"],
            hidden_size=hidden,
            intermediate_size=intermediate,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            vocab_size=152064,
        ),
        "vision": dict(big["vision"], out_hidden_size=hidden),
        "pixels": big["pixels"],
        "init_std": 0.02,
        "tie_word_embeddings": False,
    }
