"""Benchmark stage: FP8 vs BF16 serving speed in vLLM against the bandwidth roofline."""
