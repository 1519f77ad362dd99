"""vlmquant serve: a checkpoint behind vLLM's OpenAI-compatible server."""
