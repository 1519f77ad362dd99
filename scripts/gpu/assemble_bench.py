"""Assemble a bench JSON from per-engine results when a bench run was cut short.

    python scripts/gpu/assemble_bench.py WORK INSPECT GBS SOURCE REV STARTED OUT.json

The first 3B bench on an H200 hit the 10-minute call limit after three of its four engines
(the bench stage now saves after every engine). This rebuilds the same JSON schema from
WORK_DIR/<model_index>_<mode>/engine_result.json, with decode bytes computed from the 3B
shapes (meta device, no weights) and each module's stored dtype from INSPECT_DIR's
`vlmquant inspect --json` output, and a copy bandwidth that was NOT measured in that run:
BANDWIDTH_GBS with its SOURCE is recorded as such.
"""

import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText

from vlmquant.bench.bench_stage import ratios
from vlmquant.checkpoint.names import hub_name
from vlmquant.tiny.make_tiny import SHAPES, build_config, build_tokenizer

work, inspect_dir, gbs, source, rev, started, out = sys.argv[1:8]
config = build_config(SHAPES["3b"], build_tokenizer())
with torch.device("meta"):
    model = AutoModelForImageTextToText.from_config(config)
stored = {
    "random": json.loads((Path(inspect_dir) / "inspect_random.json").read_text())["modules"],
    "fp8_fp8_demo": json.loads((Path(inspect_dir) / "inspect_fp8_fp8_demo.json").read_text())[
        "modules"
    ],
}


def decode_bytes(modules):
    lm = head = 0
    for name, p in model.named_parameters():
        key = hub_name(name)
        if key.startswith(("model.layers.", "model.norm.")):
            module = key.rsplit(".", 1)[0]
            fp8 = key.endswith(".weight") and modules.get(module) == "F8_E4M3"
            lm += p.numel() * (1 if fp8 else 2)
        elif key == "model.embed_tokens.weight":  # tied: lm_head reads this matrix
            head += p.numel() * 2
    return {"language_model": lm, "lm_head": head, "total": lm + head}


bandwidth = float(gbs) * 1e9
results = []
for d in sorted(Path(work).iterdir()):
    r = json.loads((d / "engine_result.json").read_text())
    index, mode = d.name.split("_", 1)
    need = decode_bytes(stored[Path(r["model"]).name])
    roofline = bandwidth / need["total"]
    r.update(
        model_index=int(index),
        mode=mode,
        decode_bytes=need,
        roofline_tok_s=roofline,
        roofline_fraction=r["single_stream"]["tok_s"] / roofline,
    )
    results.append(r)
env = (Path(inspect_dir) / "environment.txt").read_text().split("\n")
data = {
    "device": "cuda",
    "card": env[0].split(",")[0],
    "copy_bandwidth_bytes_s": bandwidth,
    "bandwidth_source": source,
    "complete": False,
    "results": results,
    "ratios": ratios(results),
    "run": {
        "versions": dict(zip(*[iter(env[1].split())] * 2, strict=True)),
        "git_revision": rev,
        "started": started,
        "command": ["OUT=$OUT", "bash", "scripts/gpu/bench_3b.sh"],
    },
}
Path(out).write_text(json.dumps(data, indent=2) + "\n")
