"""Everything about a checkpoint folder that needs no model in memory: safetensors headers
(`headers`), on-disk tensor names (`names`), what a stage may take (`contract`), vLLM's loader
rules (`check_vllm` stage), and the `inspect` stage with its `--diff`."""
