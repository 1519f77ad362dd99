"""vlmquant: FP8 post-training quantization of vision-language models, checked in vLLM."""

__version__ = "0.1.0"
