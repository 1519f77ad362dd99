"""Run upstream ModelOpt `hf_ptq.py`, unchanged, in this process (a subprocess of `parity`).

    python -m vlmquant.parity.run_hf_ptq HF_PTQ_DIR [hf_ptq.py flags...]

hf_ptq.py's `main()` refuses to start without CUDA although its whole FP8 path runs on CPU with
`--device cpu`. With `--device cpu` this runner answers `torch.cuda.is_available()` with True
for that one guard and nothing else changes: the script is executed from its own folder with
`runpy`, as `python hf_ptq.py ...` would run it. Exit code 3 means hf_ptq.py could not be
imported (an hf_ptq checkout of another ModelOpt version).
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

IMPORT_FAILED = 3


def main(argv: list[str]) -> int:
    folder = Path(argv[0]).resolve()
    flags = argv[1:]
    script = folder / "hf_ptq.py"
    on_cpu = "--device" in flags and flags[flags.index("--device") + 1] == "cpu"
    import torch

    if on_cpu:
        torch.cuda.is_available = lambda: True  # hf_ptq's GPU guard; nothing else asks
    sys.path.insert(0, str(folder))
    os.chdir(folder)
    sys.argv = [str(script), *flags]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except ImportError as e:  # its imports run first; a later ImportError says the same
        print(f"hf_ptq import failed: {e}", file=sys.stderr)
        return IMPORT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
