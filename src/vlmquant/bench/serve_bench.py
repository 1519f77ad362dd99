"""`vlmquant bench --serve`: each model behind `vllm serve`, driven by vLLM's own `vllm bench
serve`, over several engine starts.

Per model and engine start: a fresh server (startup time recorded), a discarded warm-up, then
the random text dataset at each --concurrency (--serve-shape INPUTxOUTPUT, ignore_eos,
--serve-prompts requests per unit of concurrency, at least 16), then image prompts at
concurrency 1 for each --image-sizes (vLLM's random-mm dataset: a fresh random image per
request, so no encoder-cache hits). The JSON keeps every start's numbers and, per model and
level, the median and min-max over starts; `image_ttft_ratio` is the first model's median
image TTFT divided by each other model's (>1: faster than the baseline).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

from vlmquant.engine import server
from vlmquant.engine.args import engine_env, engine_kwargs

SUMMARY_METRICS = (
    "output_throughput",
    "request_throughput",
    "median_ttft_ms",
    "p99_ttft_ms",
    "median_tpot_ms",
    "p99_tpot_ms",
    "median_itl_ms",
    "p99_itl_ms",
)
SERVED_NAME = "bench"


def plan(cfg, model: Path, port: int, results: Path, seed: int) -> list[dict[str, Any]]:
    """The `vllm bench serve` argument lists of one engine start."""
    inp, out = (int(x) for x in cfg.serve_shape.lower().split("x"))
    common = [
        "--backend", "openai-chat", "--endpoint", "/v1/chat/completions",
        "--base-url", f"http://127.0.0.1:{port}", "--model", SERVED_NAME,
        "--tokenizer", str(model), "--seed", str(seed), "--ignore-eos",
        "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99",
        "--save-result", "--result-dir", str(results), "--disable-tqdm",
    ]  # fmt: skip

    def text(name: str, c: int, n: int) -> dict[str, Any]:
        argv = [*common, "--dataset-name", "random", "--random-input-len", str(inp)]
        argv += ["--random-output-len", str(out), "--num-prompts", str(n)]
        argv += ["--max-concurrency", str(c), "--result-filename", f"{name}.json"]
        return {"name": name, "argv": argv}

    runs = [text("warmup", 1, 4)]
    runs += [text(f"c{c}", c, max(16, cfg.serve_prompts * c)) for c in cfg.concurrency]
    for size in cfg.image_sizes:
        argv = [*common, "--dataset-name", "random-mm", "--random-input-len", "16"]
        argv += ["--random-output-len", "8", "--num-prompts", str(cfg.image_requests)]
        argv += ["--max-concurrency", "1", "--random-mm-base-items-per-request", "1"]
        argv += ["--random-mm-limit-mm-per-prompt", '{"image": 1, "video": 0}']
        argv += ["--random-mm-bucket-config", f"{{({size}, {size}, 1): 1.0}}"]
        argv += ["--result-filename", f"image{size}.json"]
        runs.append({"name": f"image{size}", "argv": argv})
    return runs


def one_start(cfg, model: Path, mode: str, work: Path, seed: int) -> dict[str, Any]:
    import subprocess

    work.mkdir(parents=True, exist_ok=True)
    port = server.free_port()
    kwargs = engine_kwargs(
        model,
        max_model_len=cfg.max_model_len,
        enforce_eager=mode == "eager",
        gpu_memory_utilization=cfg.gpu_memory_utilization,
        tensor_parallel_size=cfg.tensor_parallel_size,
    )
    args = server.serve_command(model, kwargs, "127.0.0.1", port, SERVED_NAME, [])
    with open(work / "server.log", "w") as log:
        proc = server.start(args, log=log)
        try:
            startup_s = server.wait_ready(proc, f"http://127.0.0.1:{port}", cfg.timeout)
            (work / "plan.json").write_text(
                json.dumps({"runs": plan(cfg, model, port, work, seed)})
            )
            with open(work / "client.log", "w") as client_log:
                subprocess.run(
                    [sys.executable, "-m", "vlmquant.bench.serve_client", str(work / "plan.json"),
                     str(work / "client.json")],
                    stdout=client_log, stderr=subprocess.STDOUT, env=engine_env(),
                    timeout=cfg.timeout, check=True,
                )  # fmt: skip
        except (RuntimeError, subprocess.SubprocessError) as e:
            tail = "".join((work / "server.log").read_text(errors="replace").splitlines(True)[-20:])
            raise RuntimeError(f"serving benchmark of {model} failed: {e}\n{tail}") from None
        finally:
            server.stop(proc)
    runs = json.loads((work / "client.json").read_text())["runs"]
    ok = [r for r in runs if "error" not in r]
    return {
        "server_command": server.shown_command(args),
        "startup_s": round(startup_s, 2),
        "levels": [r for r in ok if r["name"].startswith("c")],
        "images": [r for r in ok if r["name"].startswith("image")],
        "failed": [r for r in runs if "error" in r],
    }


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(starts: list[dict[str, Any]]) -> dict[str, Any]:
    """Per level and metric: median and min-max over the engine starts."""
    out: dict[str, Any] = {"startup_s": spread([s["startup_s"] for s in starts])}
    by_name: dict[str, list[dict[str, Any]]] = {}
    for start in starts:
        for run in start["levels"] + start["images"]:
            by_name.setdefault(run["name"], []).append(run)
    for name, runs in by_name.items():
        out[name] = {
            m: {**spread([r[m] for r in runs]), "starts": len(runs)}
            for m in SUMMARY_METRICS
            if all(m in r for r in runs)
        }
    return out


def image_ttft_ratio(models: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per model and mode: the first model's median image TTFT (same mode) / this one's."""
    ratios: dict[str, dict[str, float]] = {}
    for m in models:
        base = next(b for b in models if b["mode"] == m["mode"])["summary"]
        if base is m["summary"]:
            continue
        ratios[f"{m['model']} [{m['mode']}]"] = {
            name[len("image") :]: base[name]["median_ttft_ms"]["median"]
            / s["median_ttft_ms"]["median"]
            for name, s in m["summary"].items()
            if name.startswith("image") and s.get("median_ttft_ms", {}).get("median")
        }
    return ratios


def run_serve_bench(cfg, work: Path, save) -> dict[str, Any]:
    """Every model and mode, `cfg.engine_starts` starts each; `save(models)` after each start."""
    models: list[dict[str, Any]] = []
    for i, model in enumerate(cfg.model):
        for mode in cfg.modes:
            entry: dict[str, Any] = {"model": str(model), "mode": mode, "starts": []}
            models.append(entry)
            for s in range(cfg.engine_starts):
                print(
                    f"bench: {model} [serve, {mode}] start {s + 1}/{cfg.engine_starts}", flush=True
                )
                start = one_start(cfg, model, mode, work / f"{i}_{mode}_serve_{s}", seed=s)
                entry["starts"].append(start)
                entry["summary"] = summarize(entry["starts"])
                for level in start["levels"][-1:]:
                    print(
                        f"bench: {model.name} [{mode}] {level['name']}: "
                        f"{level['output_throughput']:.1f} output tok/s, TTFT p50 "
                        f"{level['median_ttft_ms']:.1f} ms",
                        flush=True,
                    )
                save(models)
    return {"models": models, "image_ttft_ratio": image_ttft_ratio(models)}
