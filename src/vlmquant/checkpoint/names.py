"""Tensor and module names as checkpoints store them."""

from __future__ import annotations


def hub_name(name: str) -> str:
    """In-memory transformers-5 names -> the names written on disk (hub layout)."""
    for prefix, repl in (("model.language_model.", "model."), ("model.visual.", "visual.")):
        if name.startswith(prefix):
            return repl + name[len(prefix) :]
    return name
