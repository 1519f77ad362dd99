r"""Measure what each quantizable unit costs in fidelity, with the eval's own emulation.

    vlmquant sensitivity --base models/qwen2_5_coder_0_5b_vl/checkpoints/trained \
        --calib datasets/demo/demo_captions.txt --out sens.json

Quantizes the base as `quantize` would (the same recipe flags; or measures `--quantized`, an
export of that base), loads the export through the emulation `eval` uses (so the costs describe
what vLLM will run), and measures on held-out text, for every unit — per decoder layer the
groups vLLM fuses (q/k/v, o, gate/up, down), and the FP8 KV cache as one unit:

    cost(unit) = KLD(base || model with only that unit in FP8)

and per decoder layer its FP8 KV cache (vLLM keeps chosen layers' KV cache BF16 with
--kv-cache-dtype-skip-layers): its cost alone, as above, and its gain in the export,
KLD(export) - KLD(export with that layer's KV cache BF16), which is what `--kld-budget` ranks.

The measure is "only this unit FP8" rather than "only this unit BF16": each cost is measured
against an exactly-zero reference (all BF16 is the base itself), costs of small perturbations
add up, and their sum can be checked against the KLD of the whole export, which is measured
too (`additivity` = measured / sum of costs), as is the export with a BF16 KV cache; `quantize
--kld-budget` predicts a mix's KLD from those measured anchors (`vlmquant.quantize.budget`).

Writes one JSON: the units with their modules, weight bytes FP8 saves, cost (KLD mean) and
top-1 agreement, the whole export's and the all-linears-FP8-with-BF16-KV numbers, the eval set,
and the base's identity (config and weights sha256) so a sensitivity file of another model is
refused by quantize.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from vlmquant.checkpoint.identity import export_record, weights_identity
from vlmquant.core.config import setting
from vlmquant.core.device import resolve_device
from vlmquant.core.errors import BadInput
from vlmquant.core.outputs import check_apart, check_output, write_text_atomic
from vlmquant.core.quiet import library_output
from vlmquant.core.runinfo import RunRecord
from vlmquant.quantize import qconfig
from vlmquant.results.sensitivity import Sensitivity

MEASURE = "kld_mean with only this unit in FP8 (everything else BF16)"


@dataclasses.dataclass
class SensitivityConfig:
    base: Path | None = setting(None, "BF16 base checkpoint", required=True)
    calib: Path | None = setting(None, "calibration set .txt (held out of the eval text too)")
    out: Path | None = setting(None, "JSON file to write", required=True)
    quantized: Path | None = setting(
        None, "an FP8 export of --base to measure (default: quantize one with the flags below)"
    )
    qformat: str | None = setting(
        None,
        "weight/activation format of the export to make (default fp8); with --quantized, "
        "only to check that export's",
        choices=list(qconfig.QFORMATS),
    )
    kv_cache_qformat: str | None = setting(
        None,
        "KV cache format of the export to make (default fp8); with --quantized, only to check "
        "that export's",
        choices=list(qconfig.KV_FORMATS),
    )
    calib_size: int = setting(512, "calibration samples (fewer are accepted)", low=1)
    max_samples: int = setting(
        12, "built-in text samples to score (paragraphs, held-out captions)", low=0
    )
    text: Path | None = setting(
        None, "your held-out text, one sample a line (replaces the built-in)"
    )
    seq_len: int = setting(256, "max tokens per text sample", low=2)
    device: str = setting("auto", "auto, cuda or cpu", choices=["auto", "cuda", "cpu"])
    kernels: str = setting(
        "auto",
        "whose arithmetic the emulation follows (see `vlmquant eval --help`)",
        choices=["auto", "cuda", "cpu", "modelopt"],
    )
    seed: int = setting(1234, "sampling seed for the held-out captions")
    force: bool = setting(False, "replace an existing output file")


def validate(cfg: SensitivityConfig) -> str:
    from vlmquant.checkpoint import contract, identity

    if cfg.base is None or cfg.out is None or (cfg.calib is None and cfg.quantized is None):
        raise BadInput(
            "sensitivity: pass --base DIR, --out FILE.json and --calib FILE (or --quantized DIR)"
        )
    contract.check_checkpoint(cfg.base, "--base", "bf16")
    if cfg.quantized is not None:
        contract.check_checkpoint(cfg.quantized, "--quantized", "quantized")
        identity.check_same_model(cfg.base, cfg.quantized)
        identity.check_made_from(cfg.quantized, cfg.base)
        from vlmquant.checkpoint.quant import kv_bf16_layers

        if kv_bf16_layers(cfg.quantized):
            raise BadInput(
                f"--quantized {cfg.quantized}: keeps some layers' KV cache BF16; measure an "
                "export made without --kv-cache-bf16-layers (the costs are of each unit alone)"
            )
        made = dict(zip(("--qformat", "--kv-cache-qformat"), recipe_of(cfg.quantized), strict=True))
        for flag, asked in (
            ("--qformat", cfg.qformat),
            ("--kv-cache-qformat", cfg.kv_cache_qformat),
        ):
            if asked is not None and asked != made[flag]:
                raise BadInput(
                    f"{flag} {asked}: --quantized {cfg.quantized} was made with {flag} "
                    f"{made[flag]}; drop {flag} or pass an export made with it"
                )
    if cfg.calib is not None and not cfg.calib.is_file():
        raise BadInput(f"--calib {cfg.calib}: no such file; build one with `vlmquant calib`")
    if cfg.max_samples < 1 and cfg.text is None or cfg.seq_len < 2:
        raise BadInput("--max-samples must be >= 1 (or pass --text) and --seq-len >= 2")
    if cfg.text is not None:
        from vlmquant.eval.data import user_texts

        user_texts(cfg.text)
    from vlmquant.calib.calib_stage import set_inputs

    inputs = {"--base": cfg.base, "--quantized": cfg.quantized, **set_inputs(cfg.calib)}
    check_apart(cfg.out, inputs)
    check_output(cfg.out, cfg.force, kind="file", suffix=".json", stage="sensitivity")
    return resolve_device(cfg.device)


def export_to_measure(cfg: SensitivityConfig, work: Path) -> Path:
    """--quantized, or a fresh export of --base with quantize's own code and these flags."""
    if cfg.quantized is not None:
        return cfg.quantized
    from vlmquant.quantize.quantize_stage import QuantizeConfig
    from vlmquant.quantize.quantize_stage import run as quantize

    return quantize(
        QuantizeConfig(
            model=cfg.base,
            calib=cfg.calib,
            out=work / "export",
            qformat=cfg.qformat or "fp8",
            kv_cache_qformat=cfg.kv_cache_qformat or "fp8",
            calib_size=cfg.calib_size,
            device=cfg.device,
            seed=cfg.seed,
            allow_fewer=True,
            force=True,
        )
    )


def recipe_of(export: Path) -> tuple[str, str]:
    """(--qformat, --kv-cache-qformat) of an export, read from its files (so a measured
    `--quantized` is recorded as what it is, not as the flags' defaults)."""
    from vlmquant.checkpoint.headers import tensors
    from vlmquant.checkpoint.quant import quant_info

    quant = quant_info(export) or {}
    qformat = {"FP8": "fp8", "FP8_PER_CHANNEL_PER_TOKEN": "fp8_per_channel_per_token"}.get(
        quant.get("quant_algo"), str(quant.get("quant_algo")).lower()
    )
    if quant.get("kv_cache_quant_algo") != "FP8":
        return qformat, "none"
    scales = any(t.name.endswith(("k_scale", "v_scale")) for t in tensors(export))
    return qformat, "fp8" if scales else "fp8_cast"


def run(cfg: SensitivityConfig) -> Path:
    if cfg.calib is not None:  # the set's .jsonl or manifest names it as well as its .txt
        from vlmquant.calib.calib_stage import set_txt

        cfg = dataclasses.replace(cfg, calib=set_txt(cfg.calib))
    device = validate(cfg)
    from tqdm.auto import tqdm
    from transformers import AutoProcessor

    from vlmquant.eval import data, emulate
    from vlmquant.eval.eval_stage import resolve_kernels
    from vlmquant.quantize.units import KV_UNIT, Switchboard, Unit, units_of
    from vlmquant.sensitivity.scoring import Scorer, measure_kv_layers

    record = RunRecord("sensitivity", cfg)
    work = cfg.out.parent / f".{cfg.out.stem}-work"
    shutil.rmtree(work, ignore_errors=True)
    log = cfg.out.with_name(f"{cfg.out.stem}.sensitivity.log")
    try:
        with record.timed("quantize"):
            export = export_to_measure(cfg, work)
        # what the export was calibrated on (fewer than --calib-size when --calib holds fewer)
        made = export_record(export)
        used = made.calibration.samples if made else None
        samples = data.build_eval_set(cfg.calib, cfg.max_samples, 0, cfg.seed, cfg.text)
        kernels = resolve_kernels(cfg.kernels)
        with record.timed("load"), library_output(log):
            processor = AutoProcessor.from_pretrained(cfg.base)
            model, precision = emulate.load_emulated(export, device, kernels=kernels)
            board = Switchboard(model, cfg.base, precision)
        encoded = [data.encode(processor, s, cfg.seq_len) for s in samples]
        units = units_of(precision, board.params())
        if board.kv_scales:
            units.append(Unit(KV_UNIT, [], 0))
        with record.timed("base"):
            scorer = Scorer(board, encoded, device)
        measured: dict[str, Any] = {}
        with record.timed("units"):
            for unit in tqdm(units, desc="sensitivity"):
                board.set_unit(unit, True)
                measured[unit.name] = scorer.score()
                board.set_unit(unit, False)
        with record.timed("whole"):
            board.set_all(True)
            whole = scorer.score()
            board.set_kv(False)
            linears_only = scorer.score()
        with record.timed("kv_layers"):
            kv_layers = measure_kv_layers(board, scorer, whole["kld_mean"], tqdm)
        identity = weights_identity(cfg.base)
        from vlmquant.checkpoint.quant import quant_info

        quant_cfg = json.dumps(quant_info(export))
        qformat, kv_format = recipe_of(export)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = sum(m["kld_mean"] for m in measured.values())
    result = {
        "base": str(cfg.base),
        "base_identity": identity,
        "export": str(cfg.quantized) if cfg.quantized else "built by quantize (removed)",
        "recipe": {
            "qformat": qformat,
            "kv_cache_qformat": kv_format,
            "calib": str(cfg.calib) if cfg.calib else None,
            "calib_size": cfg.calib_size,
            "calib_samples": used,
            "quantization": json.loads(quant_cfg),
        },
        "measure": MEASURE,
        "emulated_kernels": kernels,
        "eval_set": {
            "text_samples": len(samples),
            "tokens": sum(int(e["input_ids"].shape[1]) - 1 for e in encoded),
            "seq_len": cfg.seq_len,
            "user_text": str(cfg.text) if cfg.text else None,
            "held_out_from": str(cfg.calib) if cfg.calib else None,
        },
        "whole_export": whole,
        "linears_fp8_kv_bf16": linears_only,
        "sum_of_unit_costs": total,
        "additivity": whole["kld_mean"] / total if total > 0 else None,
        "kv_layers": kv_layers,
        "units": [
            {
                "unit": u.name,
                "modules": u.modules,
                "fp8_params": u.params,
                "weight_bytes_saved": u.bytes_saved,
                "cost": measured[u.name]["kld_mean"],
                "top1_agreement": measured[u.name]["top1_agreement"],
            }
            for u in units
        ],
    }
    result["run"] = record.data()
    write_text_atomic(cfg.out, Sensitivity.dumps(result))
    worst = sorted(result["units"], key=lambda u: -u["cost"])[:3]
    if isinstance(used, int) and used < cfg.calib_size:
        print(f"sensitivity: calibrated on {used} samples, all --calib holds (--calib-size "
              f"{cfg.calib_size} asked)")  # fmt: skip
    print(
        f"sensitivity: {len(units)} units, whole export KLD {whole['kld_mean']:.4f} "
        f"(sum of unit costs {total:.4f}); costliest "
        + ", ".join(f"{u['unit']} {u['cost']:.4f}" for u in worst)
        + f" -> {cfg.out}"
    )
    return cfg.out
