"""Where calibration captions come from: the shipped demo word lists (drawn pictures beside),
COCO 2017 caption annotations, or a local Hugging Face dataset folder or file; and the cleaning
every source goes through (whitespace normalised, empties and duplicates dropped)."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import logging
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vlmquant.core.errors import BadInput
from vlmquant.synthetic import demo_captions as synthetic_captions
from vlmquant.synthetic import draw


@dataclasses.dataclass
class Caption:
    text: str
    image_id: int | str | None = None
    file_name: str | None = None


def normalize(text: Any) -> str:
    return re.sub(r"\s+", " ", text).strip() if isinstance(text, str) else ""


def demo_captions() -> list[Caption]:
    """The demo set: synthetic captions, each paired with a picture we draw
    (`vlmquant.synthetic`)."""
    return [Caption(text, image_id=i, file_name=name) for i, text, name in synthetic_captions()]


def write_demo_images(folder: Path, names: set[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in sorted(names):
        draw(name.removesuffix(".png")).save(folder / name)


COCO_CAPTION_FILES = ("captions_train2017.json", "captions_val2017.json")


def coco_file(path: Path) -> Path:
    """The file a --coco-annotations path names: the path itself, or for a folder (COCO's
    `annotations/` layout included) its captions_train2017.json, else captions_val2017.json."""
    if not path.is_dir():
        return path
    for name in COCO_CAPTION_FILES:
        for candidate in (path / name, path / "annotations" / name):
            if candidate.is_file():
                return candidate
    raise BadInput(
        f"--coco-annotations {path}: a folder without {' or '.join(COCO_CAPTION_FILES)}; "
        "pass the captions file itself"
    )


def _read_coco_bytes(path: Path) -> bytes:
    """The JSON bytes of a captions file, a .gz of one, or COCO's annotations_*.zip."""
    if path.suffix == ".gz":
        with gzip.open(path) as f:
            return f.read()
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            members = {Path(m).name: m for m in z.namelist()}
            for name in COCO_CAPTION_FILES:
                if name in members:
                    return z.read(members[name])
        raise BadInput(
            f"--coco-annotations {path}: a zip without {' or '.join(COCO_CAPTION_FILES)}; "
            "pass annotations_trainval2017.zip or the captions file itself"
        )
    return path.read_bytes()


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise BadInput(
            f"--coco-annotations {path}: no such file; download COCO 2017 "
            "annotations and pass captions_train2017.json"
        )
    try:
        return json.loads(_read_coco_bytes(path))
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise BadInput(
            f"--coco-annotations {path}: unreadable ({e.__class__.__name__}: {e}); "
            "pass the COCO captions file captions_train2017.json (.json, .json.gz or "
            "annotations_trainval2017.zip)"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInput(
            f"--coco-annotations {path}: not JSON ({e.__class__.__name__}); "
            "pass the COCO captions file captions_train2017.json"
        ) from None


def coco_captions(path: Path) -> list[Caption]:
    data = _load_json(path)
    annotations = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(annotations, list) or not any(
        isinstance(a, dict) and "caption" in a for a in annotations
    ):
        raise BadInput(
            f"--coco-annotations {path}: no annotations[].caption entries; pass a "
            "COCO captions file (captions_*.json), not instances or keypoints"
        )
    files = {
        img.get("id"): img.get("file_name")
        for img in data.get("images", [])
        if isinstance(img, dict)
    }
    return [
        Caption(a.get("caption"), a.get("image_id"), files.get(a.get("image_id")))
        for a in annotations
        if isinstance(a, dict)
    ]


SPLITS = ("train", "validation", "valid", "val", "test")


@contextlib.contextmanager
def _logger_off(name: str):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def _splits(file: Path, root: Path) -> set[str]:
    """The split names a data file's path under `root` carries (`data/test-0000.parquet`)."""
    rel = file.relative_to(root) if root.is_dir() else Path(file.name)
    words = re.split(r"[^a-z]+", rel.as_posix().lower())
    return {w for w in words if w in SPLITS}


def hf_captions(path: Path, column: str) -> list[Caption]:
    if not path.exists():
        raise BadInput(
            f"--hf-dataset {path}: no such file or folder; pass a save_to_disk "
            "folder or parquet/jsonl files"
        )
    import datasets  # heavy; only this source needs it

    from vlmquant.core.quiet import verbose

    if not verbose():  # its "Generating train split" bars would bury a one-line error
        datasets.disable_progress_bars()
    try:
        if (
            path.is_dir()
            and (path / "dataset_info.json").exists()
            or (path / "dataset_dict.json").exists()
        ):
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
        else:
            files = sorted(path.rglob("*")) if path.is_dir() else [path]
            parquet = [str(f) for f in files if f.suffix == ".parquet"]
            jsonl = [str(f) for f in files if f.suffix in (".jsonl", ".json")]
            if not parquet and not jsonl:
                raise BadInput(
                    f"--hf-dataset {path}: no save_to_disk dataset, parquet or jsonl "
                    "files found; pass one of those"
                )
            if parquet and jsonl:  # one would be read and the other silently not
                raise BadInput(
                    f"--hf-dataset {path}: holds both parquet and jsonl files; pass the "
                    "file or a folder of the one you mean"
                )
            kind, data_files = ("parquet", parquet) if parquet else ("json", jsonl)
            splits = sorted({sp for f in data_files for sp in _splits(Path(f), path)})
            if len(splits) > 1:  # a hub snapshot: data/train-*.parquet, data/test-*.parquet
                raise BadInput(
                    f"--hf-dataset {path}: holds the splits {', '.join(splits)}; pass one "
                    "split's files or folder"
                )
            # datasets logs a reader's failure on stderr as well as raising it: the one line
            # below says it (with the reader's own cause)
            quiet = contextlib.nullcontext() if verbose() else _logger_off("datasets")
            with quiet:
                ds = datasets.load_dataset(kind, data_files=data_files, split="train")
    except BadInput:
        raise
    except Exception as e:  # datasets raises many types for unreadable input
        cause = f"; {e.__cause__}" if e.__cause__ is not None else ""
        raise BadInput(
            f"--hf-dataset {path}: cannot read it ({e.__class__.__name__}: {e}{cause}); "
            "pass a save_to_disk folder or parquet/jsonl files"
        ) from None
    if column not in ds.column_names:
        raise BadInput(
            f"--hf-dataset {path}: no column {column!r} (have "
            f"{', '.join(ds.column_names)}); pass --text-column"
        )
    ids = ds["image_id"] if "image_id" in ds.column_names else [None] * len(ds)
    names = ds["file_name"] if "file_name" in ds.column_names else [None] * len(ds)
    texts = ds[column]
    out = []
    for text, image_id, name in zip(texts, ids, names, strict=True):
        for t in text if isinstance(text, list) else [text]:  # some datasets hold 5 per image
            out.append(Caption(t, image_id, name))
    return out


def clean(captions: Iterable[Caption]) -> tuple[list[Caption], dict[str, int]]:
    """Normalise whitespace, drop empty captions and exact duplicates (first kept)."""
    seen: set[str] = set()
    kept: list[Caption] = []
    stats = {"raw": 0, "empty_dropped": 0, "duplicates_dropped": 0}
    for cap in captions:
        stats["raw"] += 1
        text = normalize(cap.text)
        if not text:
            stats["empty_dropped"] += 1
        elif text in seen:
            stats["duplicates_dropped"] += 1
        else:
            seen.add(text)
            kept.append(dataclasses.replace(cap, text=text))
    stats["usable"] = len(kept)
    return kept, stats
