"""Diagnose image requests on one checkpoint: the HF processor alone (as vLLM calls it), then a
vLLM engine (eager) timing chat requests with a drawn image at each size, one pixel changed per
request (no encoder-cache hits). Failures print their whole exception chain. Prints lines
starting `probe:`; used to find why the FP8 export's image requests were slower and failed at
1,344 px on the GPU host.

    python3 scripts/gpu/image_probe.py CHECKPOINT [SIZE ...]      (default sizes 448 1344)
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path


def chain(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))[-4000:]


def timed(label: str, fn, repeats: int) -> None:
    times = []
    for k in range(repeats):
        t0 = time.perf_counter()
        try:
            out = fn(k)
        except Exception as exc:  # the point is to see it
            print(f"probe: {label} FAILED\n{chain(exc)}", flush=True)
            return
        times.append(time.perf_counter() - t0)
    ms = ", ".join(f"{1000 * t:.1f}" for t in times)
    print(f"probe: {label}: {ms} ms ({out})", flush=True)


def main(ckpt: Path, sizes: list[int]) -> None:
    from transformers import AutoProcessor
    from vllm import LLM, SamplingParams

    from vlmquant.infer.engine import _messages, engine_kwargs
    from vlmquant.prompts import load_image

    proc = AutoProcessor.from_pretrained(ckpt, use_fast=True)
    ip = proc.image_processor
    print(f"probe: {ckpt.name}: {type(proc).__name__}, {type(ip).__name__}, size={ip.size}")

    def image(size: int, k: int):
        img = load_image("red_circle", size).copy()
        img.putpixel((0, 0), (k % 256, 1, 1))
        return img

    for size in sizes:
        timed(
            f"hf processor {size}px",
            lambda k, s=size: tuple(
                proc(text="<|image_pad|>", images=[image(s, k)], return_tensors="pt")[
                    "pixel_values"
                ].shape
            ),
            3,
        )
    llm = LLM(
        **engine_kwargs(ckpt, max_model_len=4096, enforce_eager=True, gpu_memory_utilization=0.5)
    )
    params = SamplingParams(max_tokens=1, temperature=0.0)
    for size in sizes:
        timed(
            f"vLLM chat {size}px",
            lambda k, s=size: len(
                llm.chat(
                    _messages({"text": "Describe.", "image": image(s, 100 + k)}),
                    params,
                    use_tqdm=False,
                )[0].prompt_token_ids
            ),
            4,
        )


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), [int(s) for s in sys.argv[2:]] or [448, 1344])
