"""The embedded default model: a tiny real Qwen2.5-VL built from a config (random, seeded)."""
