"""What a stage may take as a checkpoint, checked before it uses one.

A checkpoint folder must have a readable config.json, complete safetensors files holding every
parameter the architecture needs with the right shapes (nothing missing, nothing unexpected
besides ModelOpt's scale tensors), the tokenizer and processor files, and the quantization
state the stage needs: `quantize`'s source must be BF16 (re-quantizing an export drops its
scales and re-quantizes FP8 codes), eval's base too; an export's scales must be finite and
above 0. Each failure is one BadInput line naming the file or tensor and the fix. Reads headers
and the scale tensors, and builds the architecture on the meta device: no weights are loaded
(`check_finite` checks the weights of a model a stage loaded anyway).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from vlmquant.checkpoint.headers import SCALE_SUFFIXES, read_json, require_checkpoint, tensors
from vlmquant.checkpoint.meta import meta_model
from vlmquant.checkpoint.names import hub_name
from vlmquant.checkpoint.quant import is_quantized
from vlmquant.core.errors import BadInput

Want = Literal["bf16", "quantized", "any"]
FP8_DTYPES = ("F8_E4M3", "F8_E5M2")
KV_SCALES = ("k_scale", "v_scale")
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


def read_config(path: Path | None, flag: str) -> dict[str, Any]:
    """`path`'s config.json as a dict; a missing folder, file or malformed JSON is bad input."""
    if path is None:
        raise BadInput(f"{flag}: pass a checkpoint folder")
    require_checkpoint(path, flag)
    config = read_json(path / "config.json")
    if not isinstance(config, dict):
        raise BadInput(f"{path / 'config.json'}: not a JSON object; restore the config")
    return config


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


def scale_problems(path: Path) -> list[str]:
    """What an export's weights and its quantization config disagree on: an FP8 weight without
    its weight_scale (the loaders stop on it, or read the codes unscaled), a config that says
    FP8 over weights with no FP8 tensor (a BF16 checkpoint with an export's config copied in),
    and k/v cache scales where the config names no KV-cache format (vLLM would run a BF16
    cache and drop them)."""
    from vlmquant.checkpoint.quant import quant_info

    stored = {hub_name(t.name): t for t in tensors(path)}
    fp8 = [n for n, t in sorted(stored.items()) if t.dtype in FP8_DTYPES]
    wrong = [f"{n} is stored FP8 without its weight_scale" for n in fp8
             if n.endswith(".weight") and n + "_scale" not in stored]  # fmt: skip
    info = quant_info(path) or {}
    if "FP8" in str(info.get("quant_algo") or "") and not fp8:
        wrong.append(
            f"the quantization config says {info['quant_algo']}, but no tensor is stored in FP8 "
            "(a BF16 checkpoint with an export's config copied in?)"
        )
    kv = sorted(n for n in stored if n.endswith(KV_SCALES))
    if kv and not info.get("kv_cache_quant_algo"):
        wrong.append(
            f"{kv[0]} is a KV-cache scale, but the quantization config names no KV-cache format "
            "(kv_cache_quant_algo), so vLLM would run a BF16 cache and drop it"
        )
    return wrong


def stored_tensors(path: Path, pick) -> Iterator[tuple[Any, Any]]:
    """(TensorInfo, tensor) for each stored tensor `pick(info)` selects, one file open at a
    time: the tensors are read, the rest of the checkpoint is not."""
    from safetensors import safe_open

    by_file: dict[str, list] = {}
    for t in tensors(path):
        if pick(t):
            by_file.setdefault(t.file, []).append(t)
    for file, infos in sorted(by_file.items()):
        with safe_open(str(path / file), "pt") as f:
            for t in infos:
                yield t, f.get_tensor(t.name)


def bad_scales(path: Path) -> list[str]:
    """Scale tensors (ModelOpt's weight/input/k/v scales) holding a value vLLM cannot run: NaN,
    infinite, zero or negative (a zero weight scale silences its layer; NaN poisons every
    token after it). Reads the scales only: small tensors."""
    import torch

    bad = []
    for t, v in stored_tensors(path, lambda t: t.name.rsplit(".", 1)[-1] in SCALE_SUFFIXES):
        v = v.float()
        wrong = ~torch.isfinite(v) | (v <= 0)
        if wrong.any():
            bad.append(f"{t.name} = {v[wrong].flatten()[0].item():g}")
    return sorted(bad)


# the bits that mark NaN (and, for E5M2, infinity) in each FP8 format, sign bit aside:
# E4M3FN has no infinity and one NaN code per sign, S.1111.111; E5M2's exponent 11111 is inf/NaN
FP8_NAN_BITS = {"F8_E4M3": (0x7F, 0x7F), "F8_E5M2": (0x7C, 0x7C)}  # (mask, value)


def nan_fp8_codes(path: Path) -> list[str]:
    """FP8 tensors holding a NaN (or infinite) code: vLLM loads them and computes NaN from the
    first token that meets one. Reads the FP8 tensors' bytes (about one byte per parameter of
    the quantized layers: seconds for a 3B model)."""
    import torch

    bad = []
    for t, codes in stored_tensors(path, lambda t: t.dtype in FP8_NAN_BITS):
        mask, value = FP8_NAN_BITS[t.dtype]
        n = int(((codes.view(torch.uint8) & mask) == value).sum())
        if n:
            bad.append(f"{t.name} holds {n} FP8 NaN/inf code{'s' if n > 1 else ''}")
    return sorted(bad)


def nonfinite_parameter(model) -> str | None:
    """The first parameter of a loaded model holding NaN or an infinity, if any."""
    import torch

    fp8 = (torch.float8_e4m3fn, torch.float8_e5m2)  # FP8 codes: their scales are checked
    for name, p in model.named_parameters():
        if p.is_floating_point() and p.dtype not in fp8 and not torch.isfinite(p).all():
            return name
    return None


def check_finite(model, path: Path, flag: str) -> None:
    """A loaded checkpoint's weights are finite numbers, else bad input naming the first."""
    name = nonfinite_parameter(model)
    if name is not None:
        raise BadInput(
            f"{flag} {path}: weight {name} holds NaN or infinite values; the checkpoint is "
            "damaged: restore its weights or rebuild it"
        )


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


def _vocabulary(path: Path) -> tuple | None:
    """What decides token ids: the BPE model and the added tokens (not padding settings)."""
    f = path / "tokenizer.json"
    if not f.is_file():
        return None
    tok = read_json(f)
    return (
        json.dumps(tok.get("model"), sort_keys=True),
        [(t["id"], t["content"]) for t in tok.get("added_tokens", [])],
    )


SAME_MODEL_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
)


def check_same_model(base: Path, other: Path, a: dict | None = None, b: dict | None = None) -> None:
    """`other` (an export) is of `base`'s model: same architecture, language-model shape and
    tokenizer; else bad input (comparing two different models gives numbers for neither)."""
    a = a if a is not None else read_config(base, "--base")
    b = b if b is not None else read_config(other, "--quantized")
    ta, tb = a.get("text_config", a), b.get("text_config", b)
    checks = {"architectures": (a.get("architectures"), b.get("architectures"))}
    checks.update({f"text_config.{k}": (ta.get(k), tb.get(k)) for k in SAME_MODEL_FIELDS})
    for field, (x, y) in checks.items():
        if x != y:
            raise BadInput(
                f"--base and --quantized differ in {field} ({x} vs {y}); compare a "
                "checkpoint with its own base"
            )
    va, vb = _vocabulary(base), _vocabulary(other)
    if va is not None and vb is not None and va != vb:
        raise BadInput(
            "--base and --quantized differ in tokenizer (tokenizer.json vocabulary "
            "or special tokens); compare a checkpoint with its own base"
        )


_IDENTITIES: dict[tuple, dict[str, str]] = {}


def weights_identity(path: Path) -> dict[str, str]:
    """What ties a result to the checkpoint it was made from: config.json's sha256 and the
    sha256 of its safetensors files' sha256s (one read of the weights). Remembered per process
    while the files' sizes and mtimes stay the same: a stage that checks a base and then records
    it (sensitivity --quantized, quantize --kld-budget) reads its weights once."""
    import hashlib

    from vlmquant.core.runinfo import sha256_file

    files = [path / "config.json", *sorted(path.glob("*.safetensors"))]
    stamp = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if stamp not in _IDENTITIES:
        weights = hashlib.sha256()
        for f in files[1:]:
            weights.update(sha256_file(f).encode())
        _IDENTITIES[stamp] = {
            "config_sha256": sha256_file(files[0]),
            "weights_sha256": weights.hexdigest(),
        }
    return dict(_IDENTITIES[stamp])


def export_record(export: Path):
    """The run.json quantize wrote in `export` (`results.quantize.QuantizeRun`), or None for a
    checkpoint without one (an export another tool made, or a make-tiny checkpoint, whose
    run.json is make-tiny's); a run.json of no known schema is bad input."""
    from vlmquant.core.typed import SCHEMA_KEY
    from vlmquant.results.quantize import QuantizeRun

    run = export / "run.json"
    if not run.is_file():
        return None
    data = read_json(run)
    tag = data.get(SCHEMA_KEY) if isinstance(data, dict) else None
    if isinstance(tag, str) and tag.startswith("vlmquant.") and tag != QuantizeRun.schema():
        return None  # another stage's record (make-tiny writes one beside its checkpoint)
    return QuantizeRun.read(run)


def check_made_from(export: Path, base: Path, flag: str = "--base") -> None:
    """An export whose run.json records the checkpoint it was made from (quantize writes
    `source_identity`) is compared only with that checkpoint: the same architecture with other
    weights (another fine-tune, another seed) gives numbers for neither. Exports without the
    record are taken as they are."""
    record = export_record(export)
    recorded = record.source_identity if record else None
    if recorded and recorded != weights_identity(base):
        made_from = record.config.get("model", "?")
        raise BadInput(
            f"{flag} {base}: not the checkpoint {export} was quantized from (its config or "
            f"weights differ from those quantize recorded; it was made from {made_from}); pass "
            "that checkpoint"
        )


def check_calibrated_on(export: Path, calib: Path) -> None:
    """eval's --calib names the set held out of its text: it must be the export's own
    calibration set (run.json records the file quantize read and its sha256)."""
    record = export_record(export)
    recorded = (record.inputs.get("calib") if record else None) or {}
    if not recorded.get("sha256"):
        return
    read = Path(recorded["path"])
    mine = calib if read.suffix == calib.suffix else calib.with_suffix(read.suffix)
    from vlmquant.core.runinfo import sha256_file

    if not mine.is_file() or sha256_file(mine) != recorded["sha256"]:
        raise BadInput(
            f"--calib {calib}: not the set {export} was calibrated on ({read}); pass that set, "
            "so that its captions stay out of the evaluation text"
        )
