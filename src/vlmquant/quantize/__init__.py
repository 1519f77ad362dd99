"""Quantize stage: ModelOpt FP8 (hf_ptq semantics), vision-FP8 variant, vLLM-ready export."""
