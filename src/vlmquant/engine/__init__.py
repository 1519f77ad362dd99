"""The vLLM layer every stage shares; it imports no stage.

- `args`: the engine arguments a checkpoint needs (ModelOpt FP8 loads with
  quantization="modelopt"), which vLLM build is installed, the worker environment;
- `worker`: one engine in a fresh process running a stage's task (`"module:function"`);
- `facts`: what the loaded engine really used (linear methods, kernels, KV dtype, bytes);
- `messages`: chat messages for text and image prompts;
- `vllm_cli`: vLLM's own command line (`serve`, `bench serve`) on the GPU and CPU builds;
- `server`: an OpenAI-compatible server process group, started, waited for and stopped.
"""
