"""Call a checkpoint's HF processor the way vLLM does for one image (`text="<|image_pad|>"`,
one drawn image per size, one pixel changed per call) and time it; a failure prints its whole
exception chain. Lines start `probe:`. It found why every FP8 export failed image requests of
more than --calib-seq tokens (docs/results/bench-3b-h200-attempts2/image-probe.txt).

    python3 scripts/gpu/image_probe.py CHECKPOINT [SIZE ...]      (default sizes 448 1344)
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path


def main(ckpt: Path, sizes: list[int]) -> None:
    from transformers import AutoProcessor

    from vlmquant.prompts import load_image

    proc = AutoProcessor.from_pretrained(ckpt, use_fast=True)
    ip = proc.image_processor
    print(f"probe: {ckpt.name}: {type(proc).__name__}, {type(ip).__name__}, size={ip.size}")
    for size in sizes:
        times, shape = [], None
        try:
            for k in range(3):
                img = load_image("red_circle", size).copy()
                img.putpixel((0, 0), (k, 1, 1))
                t0 = time.perf_counter()
                shape = proc(text="<|image_pad|>", images=[img], return_tensors="pt")[
                    "pixel_values"
                ].shape
                times.append(time.perf_counter() - t0)
        except Exception as exc:  # the point is to see it
            print(f"probe: hf processor {size}px FAILED", flush=True)
            print("".join(traceback.format_exception(exc))[-4000:], flush=True)
            continue
        ms = ", ".join(f"{1000 * t:.1f}" for t in times)
        print(f"probe: hf processor {size}px: {ms} ms ({tuple(shape)})", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), [int(s) for s in sys.argv[2:]] or [448, 1344])
