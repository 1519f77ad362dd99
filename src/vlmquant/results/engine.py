"""What a vLLM engine used (`engine.facts.engine_facts`), as results record it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class EngineFacts:
    """`engine_facts` as a result records it (what a reader may rely on)."""

    quantization: str | None = None
    kv_cache_dtype: str | None = None
    num_gpu_blocks: int | None = None
    block_size: int | None = None
    layer_methods: dict[str, int] | None = None
    kernels: dict[str, Any] | None = None
    weight_bytes: int | None = None
    attention_kv_cache_dtypes: dict[str, int] | None = None  # layers per KV dtype (session 19)
    weight_bytes_excludes: str | None = None
    unavailable: str | None = None
    layer_methods_unavailable: str | None = None
