"""Checkpoint inspection from safetensors headers (no weights loaded)."""
