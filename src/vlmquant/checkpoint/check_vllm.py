"""Check a checkpoint against what the installed vLLM's Qwen2.5-VL loader will accept.

    vlmquant check-vllm models/qwen2_5_vl_3b_instruct/quantized/fp8_fp8_coco2017_vlm [--json]

Static: reads safetensors headers and configs, builds the architecture on the meta device (no
weights), and asks the installed vLLM for its rules — the model class's weight-name mapper and
packed modules (q/k/v -> qkv_proj, gate/up -> gate_up_proj), and its ModelOpt FP8 config's
decision per layer (quantized, excluded by a pattern, or refused, as vLLM does for vision
modules it will not quantize). No engine starts. Rules:

  unknown-module      a tensor whose module the architecture does not have
  kv-scale-placement  k_scale / v_scale outside the language model's attention
  fused-mixed         shards of one fused module stored in different precisions
  fused-scales        shards of one fused module with different weight scales (the CPU build
                      cannot requantize them at load; the GPU build does)
  layer-precision     a linear stored FP8 that vLLM will run unquantized, or the reverse
  tensor-parallel     heads that --tensor-parallel-size does not split evenly (text and vision
                      attention heads; KV heads split or replicated)
  scale-shape         a weight or input scale shaped otherwise than the checkpoint's format
                      needs (FP8: one per tensor; FP8_PER_CHANNEL_PER_TOKEN: one per output
                      channel, no static input scale)
  kv-skip-layers      BF16 KV-cache layers (precision_map.json) the model does not have, without
                      an FP8 KV cache, or in a vLLM without --kv-cache-dtype-skip-layers

Exit 0 when the checkpoint passes (warnings allowed), 2 when it fails; the report names the
offending tensors and says what to do.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from vlmquant.checkpoint.headers import tensors
from vlmquant.checkpoint.names import hub_name
from vlmquant.checkpoint.scales import KV_SCALES
from vlmquant.checkpoint.vllm_rules import (
    architecture_modules,
    model_cls_fallback,
    numel,
    packed_prefix,
    quant_decider,
    scalar_value,
    scale_shape_errors,
    vllm_rules,
)
from vlmquant.core.errors import BadInput
from vlmquant.results.check import Finding, Verdict

SHOW = 5  # tensors named per finding


def kv_skip_problems(checkpoint: Path, config: dict) -> list[str]:
    """Why an export's BF16 KV-cache layers cannot apply: layers the model does not have, no
    FP8 KV cache to skip, or an installed vLLM without the option."""
    import dataclasses

    from vlmquant.checkpoint.quant import kv_bf16_layers, quant_info

    layers = kv_bf16_layers(checkpoint)
    if not layers:
        return []
    n = config.get("text_config", config).get("num_hidden_layers", 0)
    problems = [f"layer {i} (the model has layers 0-{n - 1})" for i in layers if i >= n]
    if (quant_info(checkpoint) or {}).get("kv_cache_quant_algo") != "FP8":
        problems.append("hf_quant_config.json names no FP8 KV cache")
    from vllm.config import CacheConfig

    if "kv_cache_dtype_skip_layers" not in {f.name for f in dataclasses.fields(CacheConfig)}:
        problems.append("this vLLM's CacheConfig has no kv_cache_dtype_skip_layers")
    return problems


def check(checkpoint: Path, tensor_parallel_size: int = 1) -> Verdict:
    from vlmquant.checkpoint.headers import read_config

    config = read_config(checkpoint, "check-vllm")
    arch = (config.get("architectures") or ["?"])[0]
    try:
        model_cls = vllm_rules(arch)
    except BadInput:
        raise
    except Exception:  # registry API differs between vLLM versions
        model_cls = model_cls_fallback(arch)
    import vllm
    from vllm.platforms import current_platform

    listed = tensors(checkpoint)
    infos = {hub_name(t.name): t for t in listed}
    modules = architecture_modules(checkpoint)
    packed = dict(getattr(model_cls, "packed_modules_mapping", {}))
    mapper = model_cls.hf_to_vllm_mapper
    quantized_in_vllm = quant_decider(checkpoint, model_cls)
    cpu_build = current_platform.is_cpu()
    findings: list[Finding] = []

    # one format, stated alike in hf_quant_config.json and config.json
    from vlmquant.checkpoint.contract import (
        bad_scales,
        nan_fp8_codes,
        quant_records_disagree,
        scale_problems,
    )

    differ = quant_records_disagree(checkpoint, config)
    if differ:
        findings.append(
            Finding(
                "quant-records",
                "error",
                "hf_quant_config.json and config.json's quantization_config state different "
                "formats (vLLM reads config.json's, this project's eval hf_quant_config.json's)",
                "re-export with vlmquant quantize",
                [differ],
            )
        )

    # every FP8 weight with its scale, FP8 weights where the config says FP8, KV scales only
    # where it names a KV-cache format
    wrong = scale_problems(checkpoint)
    if wrong:
        findings.append(
            Finding(
                "scale-presence",
                "error",
                "the weights and the quantization config disagree on which scales and FP8 "
                "tensors there are",
                "re-export with vlmquant quantize from an intact BF16 checkpoint",
                wrong,
            )
        )

    # scale values vLLM can run
    bad_values = bad_scales(checkpoint)
    if bad_values:
        findings.append(
            Finding(
                "scale-values",
                "error",
                f"{len(bad_values)} scale tensors hold NaN, infinite, zero or negative values; "
                "vLLM loads them and computes garbage (NaN spreads to every later token; a zero "
                "weight scale silences its layer)",
                "re-export with vlmquant quantize from an intact BF16 checkpoint",
                bad_values,
            )
        )

    # a weight index naming each tensor's file (vLLM loads only the files it names)
    from vlmquant.checkpoint.contract import INDEX_FIX, index_mismatch

    wrong_index = index_mismatch(checkpoint, listed)
    if wrong_index:
        findings.append(
            Finding(
                "weight-index",
                "error",
                "model.safetensors.index.json does not match the safetensors files; vLLM loads "
                "only the files its weight_map names",
                INDEX_FIX,
                [wrong_index],
            )
        )

    # FP8 weights without NaN codes (vLLM computes NaN from the first token meeting one)
    nan_codes = nan_fp8_codes(checkpoint)
    if nan_codes:
        findings.append(
            Finding(
                "fp8-codes",
                "error",
                f"{len(nan_codes)} FP8 tensors hold NaN codes; vLLM loads them and every token "
                "whose path meets one turns NaN",
                "re-export with vlmquant quantize from an intact BF16 checkpoint",
                nan_codes,
            )
        )

    # BF16 KV-cache layers (precision_map.json): real layers of an FP8 KV cache, in a vLLM
    # that can keep them BF16
    skip_problems = kv_skip_problems(checkpoint, config)
    if skip_problems:
        findings.append(
            Finding(
                "kv-skip-layers",
                "error",
                "precision_map.json keeps some layers' KV cache BF16, which vLLM does with "
                "--kv-cache-dtype-skip-layers, and that cannot apply here",
                "re-export with valid --kv-cache-bf16-layers, or run a vLLM that has "
                "--kv-cache-dtype-skip-layers",
                skip_problems,
            )
        )

    # unknown modules and KV-scale placement
    unknown, stray_kv = [], []
    for name in infos:
        module = name.rpartition(".")[0]
        if module in modules:
            continue
        (stray_kv if name.endswith(KV_SCALES) else unknown).append(name)
    if stray_kv:
        findings.append(
            Finding(
                "kv-scale-placement",
                "error",
                f"{len(stray_kv)} KV-cache scale tensors sit on modules the architecture does not "
                "have (vision attention has a fused qkv and no k_proj/v_proj; vLLM stops with "
                '"There is no module or parameter named ...k_proj")',
                "re-export with `vlmquant quantize --scope full`, which puts no KV quantizers on "
                "the vision tower",
                sorted(stray_kv),
            )
        )
    if unknown:
        findings.append(
            Finding(
                "unknown-module",
                "error",
                f"{len(unknown)} tensors belong to modules {arch} does not have",
                "re-export from a checkpoint of this architecture",
                sorted(unknown),
            )
        )

    # fused groups: precision and scale agreement
    groups: dict[str, list[str]] = defaultdict(list)
    for name in infos:
        if name.endswith(".weight") and name[:-7] in modules:
            groups[packed_prefix(name[:-7], packed)].append(name[:-7])
    mixed, scales_differ = [], []
    for shards in groups.values():
        if len(shards) < 2:
            continue
        dtypes = {infos[f"{s}.weight"].dtype for s in shards}
        if len(dtypes) > 1:
            mixed += [f"{s}.weight ({infos[f'{s}.weight'].dtype})" for s in sorted(shards)]
        elif dtypes == {"F8_E4M3"}:
            values = {
                scalar_value(checkpoint, infos[f"{s}.weight_scale"])
                for s in shards
                if f"{s}.weight_scale" in infos and numel(infos[f"{s}.weight_scale"]) == 1
            }
            if len(values) > 1:
                scales_differ += [f"{s}.weight_scale" for s in sorted(shards)]
    if mixed:
        findings.append(
            Finding(
                "fused-mixed",
                "error",
                "shards of one fused vLLM module are stored in different "
                "precisions; vLLM loads them into one layer of one precision",
                "quantize all shards of q/k/v and of gate/up alike (re-export with vlmquant "
                "quantize)",
                mixed,
            )
        )
    if scales_differ:
        findings.append(
            Finding(
                "fused-scales",
                "error" if cpu_build else "warning",
                "fused shards carry different weight scales: "
                + (
                    "this CPU build has no op to requantize them at load "
                    '("_C::static_scaled_fp8_quant() expected at most 0 argument(s)")'
                    if cpu_build
                    else "this GPU build requantizes them to the largest scale at every load"
                ),
                "re-export with `vlmquant quantize` (fused-scale unification is on by default)",
                scales_differ,
            )
        )

    from vlmquant.checkpoint.quant import tensor_parallel_problems

    if tensor_parallel_size > 1:
        problems = tensor_parallel_problems(config, tensor_parallel_size)
        if problems:
            findings.append(
                Finding(
                    "tensor-parallel",
                    "error",
                    f"vLLM cannot shard this model over {tensor_parallel_size} GPUs",
                    "pick a --tensor-parallel-size that divides the heads (or use pipeline "
                    "parallelism)",
                    problems,
                )
            )

    # scale shapes the format needs
    algo = config.get("quantization_config") or {}
    misshaped = scale_shape_errors(infos, algo.get("quant_algo"))
    if misshaped:
        findings.append(
            Finding(
                "scale-shape",
                "error",
                f"{len(misshaped)} scale tensors are shaped otherwise than "
                f"{algo.get('quant_algo')} needs; vLLM's loader stops on a shape mismatch",
                "re-export with vlmquant quantize (one --qformat for the whole checkpoint)",
                misshaped,
            )
        )

    # per-linear precision vs what vLLM will run
    wrong = []
    for module, cls in modules.items():
        w = infos.get(f"{module}.weight")
        if cls != "Linear" or w is None:
            continue
        prefix = packed_prefix(mapper.apply_list([f"{module}.weight"])[0][:-7], packed)
        stored_fp8, runs_fp8 = w.dtype == "F8_E4M3", quantized_in_vllm(prefix)
        if stored_fp8 != runs_fp8:
            wrong.append(
                f"{module}.weight (stored {w.dtype}, vLLM runs it "
                f"{'FP8' if runs_fp8 else 'unquantized'})"
            )
    if wrong:
        findings.append(
            Finding(
                "layer-precision",
                "error",
                f"{len(wrong)} linears are stored in a precision vLLM {vllm.__version__} will not "
                "run them in (its ModelOpt config excludes or refuses them, or expects FP8 scales)",
                "re-export with vlmquant quantize so exclude_modules matches the stored weights; "
                "for vision FP8 use a vLLM whose ModelOpt loader quantizes the vision tower",
                wrong,
            )
        )

    errors = [f for f in findings if f.severity == "error"]
    return Verdict(
        checkpoint=str(checkpoint),
        architecture=arch,
        vllm_version=vllm.__version__,
        vllm_build="cpu" if cpu_build else "gpu",
        ok=not errors,
        tensors_checked=len(infos),
        findings=findings,
    )


def render(verdict: Verdict) -> str:
    head = "PASS" if verdict.ok else "FAIL"
    lines = [
        f"{head}: {verdict.checkpoint} against vLLM {verdict.vllm_version} "
        f"({verdict.vllm_build} build), {verdict.tensors_checked} tensors checked"
    ]
    for f in verdict.findings:
        lines.append(f"  {f.severity} [{f.rule}] {f.message}")
        for t in f.tensors[:SHOW]:
            lines.append(f"      {t}")
        if len(f.tensors) > SHOW:
            lines.append(f"      ... and {len(f.tensors) - SHOW} more")
        lines.append(f"    fix: {f.fix}")
    return "\n".join(lines)


def failure_line(verdict: Verdict) -> str:
    first = next(f for f in verdict.findings if f.severity == "error")
    more = f" (+{len(first.tensors) - 1} more)" if len(first.tensors) > 1 else ""
    return (
        f"{verdict.checkpoint} fails check-vllm [{first.rule}]: "
        f"{first.tensors[0]}{more}; {first.fix}"
    )
