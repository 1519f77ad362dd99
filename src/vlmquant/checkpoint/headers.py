"""Read a checkpoint's safetensors headers: tensor names, dtypes, shapes, bytes; no weights.

A safetensors file starts with an 8-byte little-endian header length and a JSON header
mapping each tensor name to its dtype, shape and byte offsets, so sizes and precisions can be
read from a 7 GB checkpoint in milliseconds.
"""

from __future__ import annotations

import json
import re
import struct
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmquant.core.errors import BadInput

SCALE_SUFFIXES = ("weight_scale", "input_scale", "k_scale", "v_scale")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    file: str


def read_json(path: Path) -> Any:
    """A checkpoint's JSON file; unreadable or malformed is bad input naming the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(
            f"{path}: not a readable JSON file ({type(e).__name__}); restore it from the "
            "source checkpoint or rebuild the checkpoint"
        ) from None


MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit on the JSON header


def require_checkpoint(path: Path, flag: str = "") -> None:
    """Bad input unless `path` is a folder with a config.json; a file inside a checkpoint (its
    model.safetensors, its config.json) names the folder to pass instead."""
    name = f"{flag} {path}".strip()
    if (path / "config.json").is_file():
        return
    if not path.exists():
        raise BadInput(f"{name}: no such folder; pass a Hugging Face checkpoint folder")
    if path.is_file() and (path.parent / "config.json").is_file():
        raise BadInput(f"{name}: a file of a checkpoint; pass its folder {path.parent}")
    raise BadInput(
        f"{name}: not a Hugging Face checkpoint (no config.json); pass a checkpoint folder"
    )


def read_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file, checked against the file: an empty, truncated or
    foreign file is bad input naming it."""

    def bad(why: str) -> BadInput:
        return BadInput(
            f"{path}: not a complete safetensors file ({why}); restore it from its source or "
            "rebuild the checkpoint"
        )

    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise bad(f"{size} bytes")
            (length,) = struct.unpack("<Q", head)
            if length > min(size - 8, MAX_HEADER_BYTES):
                raise bad("its header length points past the end")
            header = json.loads(f.read(length))
    except OSError as e:
        raise BadInput(f"{path}: cannot be read ({e.strerror}); check its permissions") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise bad("its header is not JSON") from None
    if not isinstance(header, dict):
        raise bad("its header is not a table of tensors")
    try:
        end = max(
            (m["data_offsets"][1] for k, m in header.items() if k != "__metadata__"), default=0
        )
    except (TypeError, KeyError, IndexError):
        raise bad("a tensor entry has no data_offsets") from None
    if 8 + length + end > size:
        raise bad(f"its tensors end at byte {8 + length + end:,} of {size:,}: truncated")
    return header


def tensors(checkpoint: Path) -> list[TensorInfo]:
    files = sorted(checkpoint.glob("*.safetensors"))
    if not files:
        raise BadInput(
            f"{checkpoint}: no .safetensors files; pass a Hugging Face checkpoint folder"
        )
    out = []
    for f in files:
        for name, meta in read_header(f).items():
            if name == "__metadata__":
                continue
            start, end = meta["data_offsets"]
            out.append(TensorInfo(name, meta["dtype"], tuple(meta["shape"]), end - start, f.name))
    return out


def module_precision(infos: list[TensorInfo]) -> dict[str, str]:
    """Per module (tensor name minus `.weight`): the dtype of its weight as stored."""
    return {t.name[: -len(".weight")]: t.dtype for t in infos if t.name.endswith(".weight")}


def summarize(checkpoint: Path) -> dict[str, Any]:
    """Sizes by dtype, tensor counts, per-module precision, and the quantization config."""
    infos = tensors(checkpoint)
    by_dtype: dict[str, dict[str, int]] = defaultdict(lambda: {"tensors": 0, "bytes": 0})
    for t in infos:
        by_dtype[t.dtype]["tensors"] += 1
        by_dtype[t.dtype]["bytes"] += t.nbytes
    precision = module_precision(infos)
    scales = Counter(
        t.name.rsplit(".", 1)[-1] for t in infos if t.name.rsplit(".", 1)[-1] in SCALE_SUFFIXES
    )
    quant = None
    if (checkpoint / "hf_quant_config.json").is_file():
        quant = read_json(checkpoint / "hf_quant_config.json")["quantization"]
    file_bytes = sum(f.stat().st_size for f in checkpoint.glob("*.safetensors"))
    return {
        "path": str(checkpoint),
        "format": describe_format(quant),
        "safetensors_bytes": file_bytes,
        "safetensors_gib": round(file_bytes / 2**30, 3),
        "tensor_count": len(infos),
        "by_dtype": dict(sorted(by_dtype.items())),
        "scale_tensors": dict(sorted(scales.items())),
        "modules_by_precision": dict(Counter(precision.values())),
        "module_groups": group_modules(precision),
        "modules": precision,
        "quantization": quant,
    }


def describe_format(quant: dict[str, Any] | None) -> str:
    if not quant:
        return "BF16"
    kv = quant.get("kv_cache_quant_algo")
    vision = not any(p.startswith("visual") for p in quant.get("exclude_modules", []))
    return (
        f"{quant['quant_algo']} (W8A8 E4M3)"
        + (f", {kv} KV cache" if kv else "")
        + (", vision FP8" if vision else ", vision BF16")
    )


def group_modules(precision: dict[str, str]) -> list[dict[str, Any]]:
    """Collapse `model.layers.N.x` into one row per (pattern, dtype) for reading."""
    groups: dict[tuple[str, str], int] = Counter()
    for name, dtype in precision.items():
        groups[(re.sub(r"\.\d+\.", ".N.", name), dtype)] += 1
    return [{"pattern": p, "dtype": d, "count": n} for (p, d), n in sorted(groups.items())]


def read_config(path: Path | None, flag: str) -> dict[str, Any]:
    """`path`'s config.json as a dict; a missing folder, file or malformed JSON is bad input."""
    if path is None:
        raise BadInput(f"{flag}: pass a checkpoint folder")
    require_checkpoint(path, flag)
    config = read_json(path / "config.json")
    if not isinstance(config, dict):
        raise BadInput(f"{path / 'config.json'}: not a JSON object; restore the config")
    return config
