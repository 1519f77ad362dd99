"""The serving benchmark's client: vLLM's own `vllm bench serve`, one run per load level,
against a server that is already up. One process per engine start, so vLLM is imported once:

    python -m vlmquant.bench.serve_client PLAN.json RESULTS.json

PLAN is {"runs": [{"name": ..., "argv": [...]}, ...]}, each argv exactly what follows
`vllm bench serve` on a command line (with --save-result into a folder of the plan's). RESULTS
keeps each run's argv and the metrics vLLM saved: throughputs, TTFT / TPOT / ITL / E2E latency
(mean, median and the asked percentiles, ms), completed and failed requests.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

KEPT = (
    "completed",
    "failed",
    "num_prompts",
    "max_concurrency",
    "duration",
    "total_input_tokens",
    "total_output_tokens",
)


def metrics(saved: dict[str, Any]) -> dict[str, Any]:
    kept = {k: saved[k] for k in KEPT if k in saved}
    kept.update(
        {k: v for k, v in saved.items() if k.endswith(("_ms", "_throughput")) and v is not None}
    )
    return kept


def main(argv: list[str]) -> int:
    from vlmquant.engine.vllm_cli import answer_version_as_installed

    answer_version_as_installed()
    from vllm.benchmarks.serve import add_cli_args
    from vllm.benchmarks.serve import main as bench_main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    plan = json.loads(Path(argv[0]).read_text())
    results = []
    for run in plan["runs"]:
        parser = FlexibleArgumentParser()
        add_cli_args(parser)
        args = parser.parse_args(run["argv"])
        bench_main(args)
        saved = Path(args.result_dir) / args.result_filename
        results.append(
            {"name": run["name"], "argv": run["argv"], **metrics(json.loads(saved.read_text()))}
        )
        Path(argv[1]).write_text(json.dumps({"runs": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
