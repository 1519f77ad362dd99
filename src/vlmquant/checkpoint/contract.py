"""What a stage may take as a checkpoint, checked before it uses one.

A checkpoint folder must have a readable config.json, complete safetensors files holding every
parameter the architecture needs with the right shapes (nothing missing, nothing unexpected
besides ModelOpt's scale tensors), the tokenizer and processor files, and the quantization
state the stage needs: `quantize`'s source must be BF16 (re-quantizing an export drops its
scales and re-quantizes FP8 codes), eval's base too; an export's scales must be finite and
above 0. Each failure is one BadInput line naming the file or tensor and the fix. Reads headers
and the scale tensors, and builds the architecture on the meta device: no weights are loaded.
The checks of the numbers are in `checkpoint.scales` (`check_finite` checks the weights of a
model a stage loaded anyway), which model a checkpoint is in `checkpoint.identity`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from vlmquant.checkpoint.headers import (
    SCALE_SUFFIXES,
    read_config,
    read_json,
    tensors,
)
from vlmquant.checkpoint.meta import meta_model
from vlmquant.checkpoint.names import hub_name
from vlmquant.checkpoint.quant import is_quantized
from vlmquant.checkpoint.scales import FP8_DTYPES, bad_scales, nan_fp8_codes, scale_problems
from vlmquant.core.errors import BadInput

Want = Literal["bf16", "quantized", "any"]
# the processor and tokenizer a Qwen2.5-VL checkpoint needs to run (any one of each group)
NEEDED_FILES = (
    ("tokenizer_config.json",),
    ("tokenizer.json", "vocab.json"),
    ("preprocessor_config.json", "processor_config.json"),
)


# the JSON files beside the weights that vLLM or transformers read when they load a checkpoint
READ_JSON_FILES = (
    "tokenizer_config.json",
    "tokenizer.json",
    "preprocessor_config.json",
    "processor_config.json",
    "generation_config.json",
    "special_tokens_map.json",
    "hf_quant_config.json",
)


def has_chat_template(path: Path) -> bool:
    """Where transformers and vLLM look for a checkpoint's chat template."""
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    for name in ("tokenizer_config.json", "processor_config.json"):
        data = read_json(path / name) if (path / name).is_file() else {}
        if isinstance(data, dict) and data.get("chat_template"):
            return True
    return False


def is_quantized_export(path: Path, config: dict[str, Any]) -> bool:
    """A ModelOpt export (what vLLM loads with quantization="modelopt"), or any checkpoint
    whose config carries a quantization_config."""
    return is_quantized(path) or "quantization_config" in config


def expected_tensors(config_dir: Path) -> dict[str, tuple[int, ...]]:
    """Parameter and persistent-buffer names (hub layout) -> shape, from the config alone."""
    try:  # transformers 5 validates config fields through huggingface_hub's strict dataclasses
        from huggingface_hub.errors import StrictDataclassError
    except ImportError:
        StrictDataclassError = ValueError  # noqa: N806
    try:
        model = meta_model(config_dir)
    except (ValueError, KeyError, TypeError, OSError, StrictDataclassError) as e:
        raise BadInput(
            f"{config_dir / 'config.json'}: transformers cannot build a model from it "
            f"({type(e).__name__}: {str(e)[:120]}); restore the checkpoint's config"
        ) from None
    return {hub_name(k): tuple(v.shape) for k, v in model.state_dict().items()}


def _tied(config: dict[str, Any]) -> bool:
    text = config.get("text_config") or {}
    return bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False)))


def check_quantization(
    path: Path, flag: str, config: dict[str, Any], want: Want, fix: str | None = None
) -> bool:
    """Whether `path` is a quantized export; bad input when that is not what `want` asks.
    `fix` replaces the default advice for a BF16 checkpoint where an export was wanted."""
    quantized = is_quantized_export(path, config)
    if want == "bf16" and quantized:
        raise BadInput(
            f"{flag} {path}: a quantized export (hf_quant_config.json / quantization_config); "
            "pass the BF16 checkpoint it was made from"
        )
    if want == "quantized" and not quantized:
        raise BadInput(
            f"{flag} {path}: not a quantized export (no hf_quant_config.json); "
            + (fix or "pass the output of `vlmquant quantize`")
        )
    return quantized


def check_chat_template(path: Path) -> None:
    """A chat_template.jinja must be a template jinja2 can compile: vLLM and transformers render
    every chat request and image sample through it, and a broken one fails only there."""
    template = path / "chat_template.jinja"
    if not template.is_file():
        return
    import jinja2

    try:
        jinja2.Environment().parse(template.read_text(encoding="utf-8"))
    except (jinja2.TemplateSyntaxError, UnicodeDecodeError) as e:
        what = f"line {e.lineno}: {e.message}" if isinstance(e, jinja2.TemplateSyntaxError) else e
        raise BadInput(
            f"{template}: not a valid Jinja template ({what}); restore it from the source "
            "checkpoint"
        ) from None


def check_checkpoint(path: Path | None, flag: str, want: Want = "any") -> dict[str, Any]:
    """Check `path` (given as `flag`) and return its config; raise BadInput on the first
    problem."""
    config = read_config(path, flag)
    quantized = check_quantization(path, flag, config, want)
    for group in NEEDED_FILES:
        if not any((path / f).is_file() for f in group):
            raise BadInput(
                f"{flag} {path}: no {' or '.join(group)}; copy the tokenizer and processor files "
                "from the source checkpoint"
            )
    for name in READ_JSON_FILES:  # vLLM reads them at load: malformed is bad input here
        if (path / name).is_file():
            read_json(path / name)
    if not has_chat_template(path):  # every chat request and image sample needs one
        raise BadInput(
            f"{flag} {path}: no chat template (chat_template.jinja, chat_template.json, or "
            "chat_template in tokenizer_config.json); copy it from the source checkpoint"
        )
    check_chat_template(path)
    listed = tensors(path)
    stored = {hub_name(t.name): t for t in listed}
    if len(stored) < len(listed):  # one name in two files: which one loads is up to the loader
        seen: dict[str, str] = {}
        for t in listed:
            if hub_name(t.name) in seen:
                raise BadInput(
                    f"{flag} {path}: tensor {t.name} is stored twice ({seen[hub_name(t.name)]} "
                    f"and {t.file}); remove the stray safetensors file"
                )
            seen[hub_name(t.name)] = t.file
    wrong_index = index_mismatch(path, listed)
    if wrong_index:
        raise BadInput(f"{wrong_index}; {INDEX_FIX}")
    if not quantized:
        fp8 = [n for n, t in stored.items() if t.dtype in FP8_DTYPES]
        if fp8:
            raise BadInput(
                f"{flag} {path}: {fp8[0]} is stored {stored[fp8[0]].dtype} but the checkpoint "
                "has no quantization config; restore hf_quant_config.json or re-export"
            )
    check_tensors(path, flag, stored, expected_tensors(path), _tied(config))
    if quantized:
        differ = quant_records_disagree(path, config)
        if differ:
            raise BadInput(
                f"{path}: {differ}; the export is damaged: re-export it with `vlmquant quantize`"
            )
        wrong = scale_problems(path)
        if wrong:
            more = f" (+{len(wrong) - 1} more)" if len(wrong) > 1 else ""
            raise BadInput(
                f"{flag} {path}: {wrong[0]}{more}; the export is damaged: re-export it with "
                "`vlmquant quantize`"
            )
        for bad, rule in (
            (bad_scales(path), "a scale must be a finite number above 0"),
            (nan_fp8_codes(path), "an FP8 weight may hold no NaN code"),
        ):
            if bad:
                more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
                raise BadInput(
                    f"{flag} {path}: {bad[0]}{more}, but {rule}; the export is damaged: "
                    "re-export it with `vlmquant quantize`"
                )
    return config


INDEX_FIX = "rebuild the index from the safetensors files or remove it"


def index_mismatch(path: Path, listed: list) -> str | None:
    """Where model.safetensors.index.json disagrees with the safetensors files, or None. vLLM
    loads only the files its weight_map names (a stale index leaves weights out), and
    transformers trusts it too."""
    index = path / "model.safetensors.index.json"
    if not index.is_file():
        return None
    data = read_json(index)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict):
        return f"{index}: has no weight_map table"
    where = {t.name: t.file for t in listed}
    for name, file in sorted(weight_map.items()):
        if where.get(name) != file:
            now = f"it is in {where[name]}" if name in where else "no safetensors file holds it"
            return f"{index}: names {file} for {name}, but {now}"
    unlisted = sorted(set(where) - set(weight_map))
    if unlisted:
        return (
            f"{index}: does not name {unlisted[0]} ({where[unlisted[0]]}), and vLLM loads only "
            "the files the index names"
        )
    return None


def quant_records_disagree(path: Path, config: dict[str, Any]) -> str | None:
    """An export states its format twice, in hf_quant_config.json and in config.json's
    quantization_config; vLLM reads config.json first, this project hf_quant_config.json: what
    they disagree on, or None."""
    from vlmquant.checkpoint.quant import config_quant_info

    f = path / "hf_quant_config.json"
    in_config = config_quant_info(config.get("quantization_config"))
    if not f.is_file() or in_config is None:
        return None
    in_file = read_json(f).get("quantization", {})
    for key in ("quant_algo", "kv_cache_quant_algo", "exclude_modules"):
        mine, theirs = in_file.get(key), in_config[key]
        if key == "exclude_modules":  # the same modules, listed in any order
            mine, theirs = sorted(mine or []), sorted(theirs or [])
        if mine != theirs:
            return (
                f"hf_quant_config.json says {key} {in_file.get(key)}, config.json's "
                f"quantization_config says {in_config[key]}"
            )
    return None


# the bits that mark NaN (and, for E5M2, infinity) in each FP8 format, sign bit aside:
# E4M3FN has no infinity and one NaN code per sign, S.1111.111; E5M2's exponent 11111 is inf/NaN


def check_tensors(path: Path, flag: str, stored: dict, expected: dict, tied: bool) -> None:
    missing = [n for n in expected if n not in stored and not (tied and n == "lm_head.weight")]
    if missing:
        raise BadInput(
            f"{flag} {path}: {len(missing)} parameter(s) missing from the safetensors, e.g. "
            f"{missing[0]}; restore the weights or rebuild the checkpoint"
        )
    for name, shape in expected.items():
        if name in stored and stored[name].shape != shape:
            raise BadInput(
                f"{flag} {path}: tensor {name} has shape {list(stored[name].shape)} but the "
                f"config needs {list(shape)}; the weights do not match config.json"
            )
    unexpected = [
        n for n in stored if n not in expected and n.rsplit(".", 1)[-1] not in SCALE_SUFFIXES
    ]
    if unexpected:
        raise BadInput(
            f"{flag} {path}: {len(unexpected)} tensor(s) the architecture does not have, e.g. "
            f"{unexpected[0]}; the weights belong to another model or config"
        )
