r"""Quantize a Hugging Face VLM to FP8 with NVIDIA ModelOpt and export a vLLM-ready checkpoint.

    vlmquant quantize --model models/qwen2_5_vl_3b_instruct/checkpoints/Qwen2.5-VL-3B-Instruct \
        --calib datasets/vlm-quantize-calib/coco2017_captions.txt

Default (`--scope lm`): the quantization hf_ptq.py --qformat fp8 --kv_cache_qformat fp8 does
for a VLM — FP8 E4M3 weights and activations on the language model, FP8 KV cache from
calibrated k/v scales, lm_head / embeddings / vision tower BF16, max calibration over
`--calib-size` captions of at most `--calib-seq` tokens. `--scope full` also quantizes the
vision tower's linears (calibrated on image+text, `--images DIR`) and keeps KV quantizers off
the vision attention. After export, fused q/k/v and gate/up shards are requantized to one
weight scale (what vLLM's GPU build does at load; the CPU build cannot), unless
`--no-unify-fused-scales`.

Writes into a temporary folder renamed into place when complete: the exported checkpoint
(hf_quant_config.json, quantization_config in config.json), tokenizer, processor and chat
template, precision_map.json, run.json. Default output:
models/<model>/quantized/fp8_<kv>_<calib>[_vlm].
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

from vlmquant.checkpoint.contract import check_checkpoint
from vlmquant.checkpoint.headers import read_json, require_checkpoint, summarize
from vlmquant.checkpoint.identity import weights_identity
from vlmquant.checkpoint.scales import check_finite
from vlmquant.core.config import setting
from vlmquant.core.device import resolve_device
from vlmquant.core.errors import BadInput
from vlmquant.core.outputs import atomic_dir, check_apart, check_output, empty_folder
from vlmquant.core.quiet import library_output, say, verbose
from vlmquant.core.runinfo import RunRecord
from vlmquant.quantize import calibration, fused_scales, qconfig
from vlmquant.quantize.export_files import copy_processor_files, record_check_vllm
from vlmquant.quantize.placement import auto_batch_size, devices_of
from vlmquant.quantize.precision import precision_map, reconcile_with_export
from vlmquant.results.quantize import BudgetChoice, PrecisionMap, QuantizeRun

SUPPORTED_ARCHITECTURES = ("Qwen2_5_VLForConditionalGeneration",)


@dataclasses.dataclass
class QuantizeConfig:
    model: Path | None = setting(None, "BF16 Hugging Face checkpoint folder", required=True)
    calib: Path | None = setting(
        None, "calibration set .txt (its .jsonl beside it gives images)", required=True
    )
    out: Path | None = setting(None, "output folder (default: models/<model>/quantized/<variant>)")
    qformat: str = setting("fp8", "weight/activation format", choices=list(qconfig.QFORMATS))
    kv_cache_qformat: str = setting(
        "fp8",
        "KV cache: fp8 (calibrated k/v scales), fp8_cast (constant amax, no calibration), none",
        choices=list(qconfig.KV_FORMATS),
    )
    kv_cache_bf16_layers: list[int] = setting(
        [],
        "decoder layers whose KV cache vLLM keeps BF16 beside the FP8 one (its "
        "--kv-cache-dtype-skip-layers; vlmquant's engines pass it from precision_map.json); "
        "`vlmquant sensitivity` measures what each layer's FP8 KV cache costs",
        low=0,
    )
    scope: str = setting(
        "lm",
        "lm: language model only (hf_ptq); full: vision tower too",
        choices=list(qconfig.SCOPES),
    )
    calib_mode: str | None = setting(
        None,
        "text or image-text (default: text for lm, image-text for full)",
        choices=["text", "image-text"],
    )
    images: Path | None = setting(
        None,
        "folder of the calib set's images (image-text mode; default: the folder its manifest "
        "records, as `calib --demo` draws them)",
    )
    calib_size: int = setting(4096, "calibration samples", low=1)
    calib_seq: int = setting(512, "max tokens per text calibration sample", low=8)
    calib_padding: str = setting(
        "hf_ptq",
        "text calibration: hf_ptq (every row left-padded to the set's longest sample; pad "
        "positions enter the max, as hf_ptq's do) or none (each sample alone, no pads)",
        choices=["hf_ptq", "none"],
    )
    batch_size: int = setting(0, "calibration batch size (0: auto by memory)", low=0)
    device: str = setting(
        "auto",
        "auto: every visible GPU, the model spread over them as hf_ptq does (accelerate's "
        "device_map auto; the CPU if there is no GPU); cuda: the first GPU alone; cpu",
        choices=["auto", "cuda", "cpu"],
    )
    seed: int = setting(1234, "random seed")
    unify_fused_scales: bool = setting(
        True,
        "requantize fused q/k/v and gate/up shards to one weight scale (vLLM CPU build needs it)",
    )
    kld_budget: float | None = setting(
        None,
        "keep the fewest weight bytes BF16 that bring the predicted KLD within this "
        "(needs --sensitivity); the export is then measured with eval's emulation",
    )
    sensitivity: Path | None = setting(
        None, "per-unit costs from `vlmquant sensitivity` on this --model, for --kld-budget"
    )
    keep_fp8_kv: bool = setting(False, "--kld-budget may not turn the FP8 KV cache off")
    budget_rounds: int | None = setting(
        None,
        "exports --kld-budget may make (default 3): after a measured miss the next aims lower by "
        "the miss and keeps more units BF16; 1 = the prediction's choice only",
        low=1,
    )
    allow_fewer: bool = setting(False, "accept a calib set smaller than --calib-size")
    force: bool = setting(False, "replace an existing output")


def variant_name(cfg: QuantizeConfig) -> str:
    stem = cfg.calib.stem.removesuffix("_captions") if cfg.calib else "calib"
    kv = {"none": "bf16kv", "fp8_cast": "fp8cast"}.get(cfg.kv_cache_qformat, cfg.kv_cache_qformat)
    fmt = {"fp8_per_channel_per_token": "fp8pcpt"}.get(cfg.qformat, cfg.qformat)
    budget = f"_kld{cfg.kld_budget:g}" if cfg.kld_budget is not None else ""
    skip = "-".join(map(str, sorted(set(cfg.kv_cache_bf16_layers))))
    kv += f"_kvskip{skip}" if skip else ""
    return f"{fmt}_{kv}_{stem}" + ("_vlm" if cfg.scope == "full" else "") + budget


def default_out(cfg: QuantizeConfig) -> Path:
    # models/<model>/checkpoints/<name> -> models/<model>/quantized/<variant>
    if cfg.model.parent.name != "checkpoints":
        raise BadInput(
            f"--model {cfg.model}: not under models/<model>/checkpoints/, so no "
            "default output folder; pass --out"
        )
    return cfg.model.parent.parent / "quantized" / variant_name(cfg)


def validate(cfg: QuantizeConfig) -> tuple[str, str]:
    """Check every input before anything is written; returns (device, calib_mode)."""
    if cfg.model is None or cfg.calib is None:
        raise BadInput("quantize: pass --model DIR and --calib FILE (or set them in --recipe)")
    require_checkpoint(cfg.model, "--model")
    arch = read_json(cfg.model / "config.json").get("architectures") or ["?"]
    if arch[0] not in SUPPORTED_ARCHITECTURES:
        raise BadInput(
            f"--model {cfg.model}: architecture {arch[0]} is not supported; "
            f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    check_checkpoint(cfg.model, "--model", "bf16")  # re-quantizing an export destroys it
    for name, value, allowed in (
        ("--qformat", cfg.qformat, qconfig.QFORMATS),
        ("--kv-cache-qformat", cfg.kv_cache_qformat, qconfig.KV_FORMATS),
        ("--scope", cfg.scope, qconfig.SCOPES),
    ):
        if value not in allowed:
            raise BadInput(f"{name} {value}: unknown; use one of {', '.join(allowed)}")
    mode = cfg.calib_mode or ("image-text" if cfg.scope == "full" else "text")
    if cfg.scope == "full" and mode != "image-text":
        raise BadInput(
            "--scope full with --calib-mode text: the vision tower needs image "
            "activations to calibrate; use --calib-mode image-text --images DIR"
        )
    if cfg.images is not None and mode != "image-text":
        raise BadInput(
            f"--images {cfg.images}: text calibration reads no images; pass --calib-mode "
            "image-text to calibrate on them, or drop --images"
        )
    if (cfg.kld_budget is None) != (cfg.sensitivity is None):
        raise BadInput(
            "--kld-budget needs --sensitivity FILE (and the reverse); measure one first: "
            f"vlmquant sensitivity --base {cfg.model} --calib {cfg.calib} --out sens.json"
        )
    if cfg.keep_fp8_kv and cfg.kld_budget is None:
        raise BadInput(
            "--keep-fp8-kv: only with --kld-budget (it keeps the budget's chooser from turning "
            "the FP8 KV cache off); without a budget the KV cache is what --kv-cache-qformat says"
        )
    if cfg.budget_rounds is not None and cfg.kld_budget is None:
        raise BadInput("--budget-rounds: only with --kld-budget (the exports a budget may make)")
    check_kv_bf16_layers(cfg)
    if cfg.kld_budget is not None and cfg.scope != "lm":
        raise BadInput("--kld-budget works on --scope lm (sensitivity measures the language model)")
    if cfg.calib_seq < 8 or cfg.batch_size < 0:
        raise BadInput("--calib-seq must be at least 8 and --batch-size at least 0")
    return resolve_device(cfg.device), mode


def check_kv_bf16_layers(cfg: QuantizeConfig) -> None:
    layers = cfg.kv_cache_bf16_layers
    if not layers:
        return
    flag = f"--kv-cache-bf16-layers {' '.join(map(str, layers))}"
    if cfg.kv_cache_qformat == "none":
        raise BadInput(
            f"{flag}: --kv-cache-qformat none keeps every layer's KV cache BF16; drop one"
        )
    if cfg.kld_budget is not None:
        raise BadInput(f"{flag}: --kld-budget chooses the BF16 KV-cache layers itself; drop one")
    text = read_json(cfg.model / "config.json")
    n = text.get("text_config", text).get("num_hidden_layers", 0)
    if max(layers) >= n:
        raise BadInput(f"{flag}: --model {cfg.model} has decoder layers 0-{n - 1}; pass those")
    if len(set(layers)) == n:
        raise BadInput(f"{flag}: that is every layer; pass --kv-cache-qformat none instead")


def run(cfg: QuantizeConfig) -> Path:
    device, mode = validate(cfg)
    if mode == "image-text" and cfg.images is None:  # the pictures a --demo set drew beside it
        from vlmquant.calib.calib_stage import recorded_images

        cfg = dataclasses.replace(cfg, images=recorded_images(cfg.calib))
    out = cfg.out or default_out(cfg)
    from vlmquant.calib.calib_stage import set_inputs

    inputs = {"--model": cfg.model, **set_inputs(cfg.calib), "--images": cfg.images}
    check_apart(out, inputs, may_sit_inside=("--images",))
    check_output(out, cfg.force, stage="quantize")
    choice = None
    if cfg.kld_budget is not None:
        from vlmquant.quantize import budget, budget_refine

        sens = budget.load(cfg.sensitivity, cfg.model, cfg.qformat, cfg.kv_cache_qformat)
        choice = budget.choose(sens, cfg.kld_budget, cfg.keep_fp8_kv)
    samples, calib_source = calibration.load_samples(
        cfg.calib, cfg.calib_size, cfg.allow_fewer, need_images=mode == "image-text"
    )
    image_paths = calibration.resolve_images(samples, cfg.images) if mode == "image-text" else None

    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForImageTextToText, AutoProcessor

    record = RunRecord("quantize", cfg)
    source_identity = weights_identity(cfg.model)  # eval and infer --compare check against it
    record.add_input("calib", calib_source)  # the file actually read
    record.add_input("model_config", cfg.model / "config.json")
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if device == "cuda":
        torch.cuda.init()  # the per-device counters exist only once CUDA is initialised
        for i in range(torch.cuda.device_count()):
            torch.cuda.reset_peak_memory_stats(i)
    # hf_ptq loads with device_map "auto": one GPU holds all of a model that fits, several
    # share one that does not (accelerate moves activations between them)
    device_map = "auto" if cfg.device == "auto" and device == "cuda" else device

    log = out.with_name(f"{out.name}.quantize.log")  # beside the checkpoint, not in it
    log.unlink(missing_ok=True)
    with atomic_dir(out, cfg.force) as tmp, library_output(log):
        rounds = (cfg.budget_rounds or 3) if choice else 1
        for export_no in range(1, rounds + 1):
            if export_no > 1:  # a measured miss: export again from the BF16 model
                model = None
                empty_folder(tmp)
                random.seed(cfg.seed)
                torch.manual_seed(cfg.seed)
            with record.timed("load"):
                model = AutoModelForImageTextToText.from_pretrained(
                    cfg.model, dtype=torch.bfloat16, device_map=device_map
                ).eval()
                placement = devices_of(model, device_map)
                check_finite(model, cfg.model, "--model")  # else NaN amax: a ModelOpt assertion
                processor = AutoProcessor.from_pretrained(cfg.model)
            language_model = qconfig.language_model_lineage(model)[-1]
            batch = auto_batch_size(language_model, cfg, device, len(samples))
            kv_format = cfg.kv_cache_qformat
            if choice is not None and not choice["kv_cache_fp8"]:
                kv_format = "none"
            quant_cfg = qconfig.build_quant_cfg(cfg.qformat, kv_format, cfg.scope)
            if choice is not None:
                quant_cfg["quant_cfg"] += budget.disable_entries(choice)
            if mode == "text" and cfg.calib_padding == "none":
                loop, rows = calibration.unpadded_text_forward_loop(
                    calibration.hf_ptq_tokenizer(cfg.model), samples, cfg.calib_seq, device
                )
                batch = 1
            elif mode == "text":
                loop, rows = calibration.text_forward_loop(
                    calibration.hf_ptq_tokenizer(cfg.model),
                    calib_source,
                    samples,
                    batch,
                    cfg.calib_seq,
                    device,
                )
            else:
                loop = calibration.image_text_forward_loop(
                    model, processor, samples, image_paths, batch, device, tqdm
                )
                rows = len(samples)
            with record.timed("quantize_and_calibrate"):
                outside = qconfig.quantize_model(model, quant_cfg, cfg.scope, loop)
            with record.timed("precision_map"):
                pmap = precision_map(model, quant_cfg["quant_cfg"], outside)
            with record.timed("export"):
                from modelopt.torch.export import export_hf_checkpoint

                # export converts the model in place (weights become FP8): nothing after this
                # may need the BF16 or fake-quant model.
                export_hf_checkpoint(model, dtype=torch.bfloat16, export_dir=tmp)
                copy_processor_files(cfg.model, tmp, processor)
            fused = {"applied": False}
            if cfg.qformat not in qconfig.PER_TENSOR:
                fused["reason"] = "per-channel weight scales: fused shards need no common scale"
            if cfg.unify_fused_scales and cfg.qformat in qconfig.PER_TENSOR:
                with record.timed("unify_fused_scales"):
                    fused = {"applied": True, **fused_scales.unify_checkpoint(tmp)}
            pmap = reconcile_with_export(pmap, tmp)
            for layer in sorted(set(cfg.kv_cache_bf16_layers)):
                pmap["kv_cache_bf16_layers"][str(layer)] = "--kv-cache-bf16-layers"
            if choice is not None:
                budget.annotate(pmap, choice)
                # first without the measurement: the emulation reads the BF16 KV layers from it
                (tmp / "precision_map.json").write_text(PrecisionMap.dumps(pmap))
                with record.timed("measure_budget"):
                    choice = budget.measure(choice, sens, cfg, tmp, device)
                pmap["kld_budget"] = choice
                (tmp / "kld_budget.json").write_text(BudgetChoice.dumps(choice))
                nxt = budget_refine.refine(sens, choice, cfg.keep_fp8_kv)
                if nxt is not None and export_no < rounds:
                    say(budget.miss_line(choice, export_no, nxt["aim"]))
                    choice = nxt
                    continue
            break
        (tmp / "precision_map.json").write_text(PrecisionMap.dumps(pmap))
        with record.timed("check_vllm"):
            verdict = record_check_vllm(tmp)
        summary = summarize(tmp)
        record.extra = {
            "device": device,
            "device_name": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "placement": placement,
            "source_identity": source_identity,
            "calibration": {
                "mode": mode,
                "samples": rows,
                "batch_size": batch,
                "batches": -(-rows // batch),
                "max_seq": cfg.calib_seq,
                "padding": cfg.calib_padding if mode == "text" else "per batch (image-text)",
                "algorithm": quant_cfg.get("algorithm"),
            },
            "quant_cfg": quant_cfg,
            "kld_budget": choice,
            "outside_language_model": outside,
            "fused_scales": fused,
            "precision_counts": pmap["counts"],
            "check_vllm": verdict,
            "size": {
                k: summary[k]
                for k in (
                    "format",
                    "safetensors_bytes",
                    "safetensors_gib",
                    "by_dtype",
                    "scale_tensors",
                )
            },
        }
        (tmp / "run.json").write_text(QuantizeRun.dumps(record.data()))
    if choice is not None:
        print(budget.verdict_line(choice))
    if isinstance(verdict, dict) and not verdict["ok"]:
        print(
            f"quantize: the export FAILS check-vllm against vLLM {verdict['vllm_version']}: "
            f"see {out / 'check_vllm.json'}"
        )
    print(
        f"quantize: {summary['format']}, {summary['safetensors_gib']:.3f} GiB, "
        f"{pmap['counts'].get('FP8_E4M3', 0)} FP8 modules -> {out}"
        + ("" if verbose() else f" (library output: {log})")
    )
    return out
