"""vLLM inference: engine settings, generation, and the engine worker run in a subprocess."""
