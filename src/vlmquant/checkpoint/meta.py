"""A checkpoint's architecture built from its config on the meta device (no weights): what the
contract and check-vllm compare its stored tensors with. Cached per config file, so a stage
that runs both checks on one checkpoint builds it once."""

from __future__ import annotations

import functools
from pathlib import Path


def meta_model(checkpoint: Path):
    """The model `config.json` describes, every tensor on the meta device (do not modify it:
    callers share it)."""
    st = (checkpoint / "config.json").stat()
    return _build(str(checkpoint.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _build(path: str, _mtime_ns: int, _size: int):
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        return AutoModelForImageTextToText.from_config(config)
