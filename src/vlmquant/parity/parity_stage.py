r"""hf_ptq parity: run upstream ModelOpt `hf_ptq.py`, unchanged, and `vlmquant quantize` on the
same model, calibration `.jsonl` and settings, and compare the two exports tensor by tensor.

    vlmquant parity --model models/qwen2_5_vl_3b_instruct/checkpoints/Qwen2.5-VL-3B-Instruct \
        --calib datasets/vlm-quantize-calib/coco2017_captions.jsonl --hf-ptq extern/Model-Optimizer

hf_ptq.py runs in a subprocess of this Python (`python -m vlmquant.parity.run_hf_ptq`) as
`hf_ptq.py --qformat Q --kv_cache_qformat KV --dataset CALIB --calib_size N --calib_seq S
--batch_size B --device D --export_path OUT/hf_ptq`; with `--device cpu` the runner lets it
past its CUDA guard (its FP8 path runs on CPU). quantize runs with `--scope lm
--no-unify-fused-scales` (hf_ptq leaves fused shards' scales apart). `--batch-size 0` is
hf_ptq's automatic batch on a GPU for both; on CPU both get quantize's CPU batch.

Writes OUT/hf_ptq/ (upstream's export), OUT/vlmquant/ (ours), OUT/hf_ptq.log, OUT/parity.json
(the `inspect --diff` result, the batch sizes each side used, run provenance); prints the diff
and the verdict. Default OUT: tmp/parity/<model>_<qformat>_<kv>.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

from vlmquant.checkpoint.diff import diff_checkpoints, render_diff
from vlmquant.core.config import setting
from vlmquant.core.device import resolve_device
from vlmquant.core.errors import BadInput
from vlmquant.core.outputs import atomic_dir, check_apart, check_output
from vlmquant.core.runinfo import RunRecord
from vlmquant.parity import run_hf_ptq
from vlmquant.quantize import calibration, placement, qconfig, quantize_stage
from vlmquant.results.quantize import QuantizeRun
from vlmquant.results.runs import ParityRun

ENV_HF_PTQ = "VLMQUANT_HF_PTQ"
DEFAULT_HF_PTQ = Path("extern/Model-Optimizer")
# where hf_ptq.py lives inside a Model-Optimizer checkout, newest layout first
HF_PTQ_FOLDERS = ("examples/hf_ptq", "examples/llm_ptq", ".")


@dataclasses.dataclass
class ParityConfig:
    model: Path | None = setting(None, "BF16 Hugging Face checkpoint folder", required=True)
    calib: Path | None = setting(None, "calibration set .jsonl (hf_ptq's --dataset)", required=True)
    hf_ptq: Path | None = setting(
        None,
        f"Model-Optimizer checkout or its examples/hf_ptq folder (default: ${ENV_HF_PTQ}, "
        f"else {DEFAULT_HF_PTQ})",
    )
    out: Path | None = setting(None, "output folder (default: tmp/parity/<model>_<qformat>_<kv>)")
    qformat: str = setting("fp8", "weight/activation format", choices=list(qconfig.QFORMATS))
    kv_cache_qformat: str = setting("fp8", "KV cache format", choices=list(qconfig.KV_FORMATS))
    scope: str = setting("lm", "lm only: hf_ptq quantizes no vision tower", choices=["lm", "full"])
    calib_size: int = setting(512, "calibration samples (hf_ptq's --calib_size)")
    calib_seq: int = setting(512, "max tokens per sample (hf_ptq's --calib_seq)")
    batch_size: int = setting(0, "calibration batch (0: hf_ptq's automatic batch on a GPU)")
    device: str = setting("auto", "auto, cuda or cpu", choices=["auto", "cuda", "cpu"])
    force: bool = setting(False, "replace an existing output")


def find_hf_ptq(given: Path | None) -> Path:
    """The folder holding hf_ptq.py, from --hf-ptq, $VLMQUANT_HF_PTQ or extern/."""
    root = given or Path(os.environ.get(ENV_HF_PTQ) or DEFAULT_HF_PTQ)
    for sub in HF_PTQ_FOLDERS:
        if (root / sub / "hf_ptq.py").is_file():
            return (root / sub).resolve()
    source = "--hf-ptq" if given else (f"${ENV_HF_PTQ}" if os.environ.get(ENV_HF_PTQ) else "")
    raise BadInput(
        f"{source + ' ' if source else ''}{root}: no hf_ptq.py in it (looked in "
        f"{', '.join(HF_PTQ_FOLDERS)}); clone Model-Optimizer there as extern/README.md says, "
        f"or pass --hf-ptq DIR"
    )


def validate(cfg: ParityConfig) -> tuple[Path, str, int]:
    """Every input checked before anything runs; returns (hf_ptq folder, device, batch)."""
    if cfg.model is None or cfg.calib is None:
        raise BadInput("parity: pass --model DIR and --calib FILE.jsonl")
    if cfg.scope != "lm":
        raise BadInput(
            f"--scope {cfg.scope}: hf_ptq quantizes only the language model of Qwen2.5-VL, so "
            "there is nothing to compare a vision-FP8 export with; use --scope lm"
        )
    if cfg.calib.suffix != ".jsonl":
        raise BadInput(
            f"--calib {cfg.calib}: hf_ptq reads a .jsonl with a text field; pass the .jsonl "
            "that `vlmquant calib` writes beside the .txt"
        )
    quantize_stage.validate(_quantize_config(cfg, Path("unused"), cfg.batch_size))
    samples, _ = calibration.load_samples(cfg.calib, cfg.calib_size, False, need_images=False)
    folder = find_hf_ptq(cfg.hf_ptq)
    device = resolve_device(cfg.device)
    batch = cfg.batch_size or (
        min(placement.CPU_BATCH_SIZE, len(samples)) if device == "cpu" else 0
    )
    return folder, device, batch


def _quantize_config(cfg: ParityConfig, out: Path, batch: int) -> quantize_stage.QuantizeConfig:
    return quantize_stage.QuantizeConfig(
        model=cfg.model,
        calib=cfg.calib,
        out=out,
        qformat=cfg.qformat,
        kv_cache_qformat=cfg.kv_cache_qformat,
        scope="lm",
        calib_size=cfg.calib_size,
        calib_seq=cfg.calib_seq,
        batch_size=batch,
        device=cfg.device,
        unify_fused_scales=False,
    )


def run_upstream(folder: Path, cfg: ParityConfig, device: str, batch: int, export: Path, log: Path):
    """hf_ptq.py in a subprocess, its output in `log`; returns the batch size it reported."""
    flags = [
        "--pyt_ckpt_path", str(cfg.model.resolve()),
        "--qformat", cfg.qformat,
        "--kv_cache_qformat", cfg.kv_cache_qformat,
        "--dataset", str(cfg.calib.resolve()),
        "--calib_size", str(cfg.calib_size),
        "--calib_seq", str(cfg.calib_seq),
        "--batch_size", str(batch),
        "--device", device,
        "--export_path", str(export.resolve()),
    ]  # fmt: skip
    command = [sys.executable, "-m", "vlmquant.parity.run_hf_ptq", str(folder), *flags]
    with open(log, "w") as f:
        f.write("$ " + " ".join(command) + "\n")
        f.flush()
        rc = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, env=os.environ).returncode
    text = log.read_text(errors="replace")
    if rc == run_hf_ptq.IMPORT_FAILED:
        cause = text.strip().splitlines()[-1]
        raise BadInput(
            f"--hf-ptq {folder}: hf_ptq.py does not import against the installed ModelOpt "
            f"({cause}); check out the Model-Optimizer commit that matches nvidia-modelopt "
            f"(extern/README.md)"
        )
    if rc != 0:
        raise RuntimeError(f"hf_ptq.py failed (exit {rc}); its output is in {log}")
    used = re.findall(r"Use calib batch_size (\d+)", text)
    return int(used[-1]) if used else None


def run(cfg: ParityConfig) -> Path:
    folder, device, batch = validate(cfg)
    variant = f"{cfg.model.name}_{cfg.qformat}_{cfg.kv_cache_qformat}"
    out = cfg.out or Path("tmp/parity") / variant
    from vlmquant.calib.calib_stage import set_inputs

    check_apart(out, {"--model": cfg.model, **set_inputs(cfg.calib), "--hf-ptq": cfg.hf_ptq})
    check_output(out, cfg.force, stage="parity")
    record = RunRecord("parity", cfg)
    record.add_input("calib", cfg.calib)
    record.add_input("hf_ptq", folder / "hf_ptq.py")
    log = out.with_name(out.name + ".hf_ptq.log")  # beside the output: kept when hf_ptq fails
    log.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out, cfg.force) as tmp:
        with record.timed("hf_ptq"):
            upstream_batch = run_upstream(folder, cfg, device, batch, tmp / "hf_ptq", log)
        with record.timed("vlmquant_quantize"):
            ours = quantize_stage.run(_quantize_config(cfg, tmp / "vlmquant", batch))
        with record.timed("diff"):
            d = diff_checkpoints(tmp / "hf_ptq", ours)
        ours_run = QuantizeRun.read(ours / "run.json")
        d.update(a=str(out / "hf_ptq"), b=str(out / "vlmquant"))
        record.extra = {
            "device": device,
            "hf_ptq_folder": str(folder),
            "batch_size": {
                "hf_ptq": upstream_batch,
                "vlmquant": ours_run.calibration.batch_size,
            },
            "diff": d,
        }
        os.replace(log, tmp / "hf_ptq.log")
        (tmp / "parity.json").write_text(ParityRun.dumps(record.data()))
    print(render_diff(d))
    return out
