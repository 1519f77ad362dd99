r"""Build the calibration set: seeded sample of captions -> .txt, .jsonl, .manifest.json.

    vlmquant calib --coco-annotations datasets/coco2017/annotations/captions_train2017.json \
        --num-samples 4096 --seed 1234 --out datasets/vlm-quantize-calib/coco2017_captions.txt

Sources: the official COCO captions JSON (`images[]` with `id`/`file_name`, `annotations[]`
with `image_id`/`caption`; also read from a .json.gz, COCO's annotations_trainval2017.zip or
the folder holding it), a Hugging Face dataset on disk (`save_to_disk` folder, or parquet /
jsonl files), or `--demo`, a synthetic caption set the project ships. Captions are
whitespace-normalised, empty ones and exact duplicates dropped (first occurrence kept), then
`num_samples` are drawn with `random.Random(seed)`. Same inputs -> byte-identical outputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import logging
import os
import random
import re
import zipfile
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from vlmquant.core.config import setting
from vlmquant.core.errors import BadInput
from vlmquant.core.outputs import check_apart, check_output
from vlmquant.core.runinfo import package_versions, sha256_file
from vlmquant.results.calib import Manifest


@dataclasses.dataclass
class CalibConfig:
    out: Path = setting(
        Path("datasets/vlm-quantize-calib/coco2017_captions.txt"),
        "the .txt to write; .jsonl and .manifest.json go beside it",
    )
    coco_annotations: Path | None = setting(
        None,
        "COCO captions JSON (captions_train2017.json; also .json.gz, COCO's "
        "annotations_trainval2017.zip, or the folder holding it)",
    )
    hf_dataset: Path | None = setting(
        None, "a dataset on disk: save_to_disk folder, or a folder / file of parquet or jsonl"
    )
    text_column: str | None = setting(None, "caption column of --hf-dataset (default: caption)")
    demo: bool = setting(False, "use the synthetic caption set the project ships (no download)")
    num_samples: int = setting(4096, "captions to draw", low=1)
    seed: int = setting(1234, "sampling seed")
    allow_fewer: bool = setting(False, "accept fewer usable captions than --num-samples")
    force: bool = setting(False, "replace existing outputs")


@dataclasses.dataclass
class Caption:
    text: str
    image_id: int | str | None = None
    file_name: str | None = None


def normalize(text: Any) -> str:
    return re.sub(r"\s+", " ", text).strip() if isinstance(text, str) else ""


def demo_captions() -> list[Caption]:
    """Synthetic captions composed from word lists shipped in vlmquant/data (deterministic)."""
    words = json.loads(
        resources.files("vlmquant.data").joinpath("demo_caption_words.json").read_text()
    )
    out = []
    for i, (s, a, p) in enumerate(
        (s, a, p) for s in words["subjects"] for a in words["actions"] for p in words["places"]
    ):
        out.append(Caption(f"{s} {a} {p}.", image_id=i, file_name=demo_image_name(i)))
    return out


def demo_image_name(i: int) -> str:
    """The demo set pairs captions with pictures we draw (a shape in a colour): synthetic, but
    real pixels through the vision tower for image+text calibration."""
    from vlmquant.prompts import COLOURS, SHAPES

    colours = [c for c in COLOURS if c != "white"]
    return f"{colours[i % len(colours)]}_{SHAPES[(i // len(colours)) % len(SHAPES)]}.png"


def write_demo_images(folder: Path, names: set[str]) -> None:
    from vlmquant.prompts import draw

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


def sibling(out: Path, suffix: str) -> Path:
    return out.with_suffix(suffix) if out.suffix == ".txt" else out.with_name(out.name + suffix)


def output_paths(out: Path) -> dict[str, Path]:
    return {"txt": out, "jsonl": sibling(out, ".jsonl"), "manifest": sibling(out, ".manifest.json")}


def images_dir(out: Path) -> Path:
    """Where `--demo` draws its pictures: `<stem>_images/` beside the .txt."""
    return out.with_name(out.stem + "_images")


def set_txt(path: Path) -> Path:
    """The .txt of the calibration set `path` names: its .jsonl or .manifest.json stand for the
    set as well as the .txt itself (when the .txt is there)."""
    for suffix in (".manifest.json", ".jsonl"):
        if path.name.endswith(suffix):
            txt = path.with_name(path.name.removesuffix(suffix) + ".txt")
            return txt if txt.is_file() else path
    return path


def recorded_images(calib: Path) -> Path | None:
    """The images folder the set's manifest records (the pictures `--demo` draws), if any."""
    manifest = output_paths(set_txt(calib))["manifest"]
    if not manifest.is_file():  # the user's own .txt: no manifest, no recorded pictures
        return None
    name = Manifest.read(manifest).images_dir
    return manifest.parent / name if name else None


def set_inputs(calib: Path | None) -> dict[str, Path | None]:
    """A calibration set's files, as inputs no output may be, hold or sit inside: the path
    given, the set's .txt, .jsonl and manifest, and the pictures its manifest records (an
    output over any of them would destroy the set)."""
    if calib is None:
        return {}
    txt = set_txt(calib)
    files: dict[str, Path | None] = {"--calib": calib}
    files.update({f"--calib's {kind}": path for kind, path in output_paths(txt).items()})
    files["--calib's images"] = recorded_images(calib)
    return files


def run(cfg: CalibConfig) -> Path:
    sources = [s for s in (cfg.coco_annotations, cfg.hf_dataset) if s is not None]
    if len(sources) + cfg.demo != 1:
        raise BadInput(
            "calib: pass exactly one source: --coco-annotations FILE, --hf-dataset DIR or --demo"
        )
    if cfg.num_samples < 1:
        raise BadInput(f"--num-samples {cfg.num_samples}: must be at least 1")
    if cfg.out.suffix != ".txt":
        raise BadInput(
            f"--out {cfg.out}: a calibration set is a .txt file (its .jsonl and manifest go "
            "beside it); pass a path ending in .txt"
        )
    if cfg.text_column is not None and cfg.hf_dataset is None:
        raise BadInput(
            f"--text-column {cfg.text_column}: names a column of --hf-dataset; drop it with "
            "--demo or --coco-annotations"
        )
    if cfg.coco_annotations is not None:
        cfg = dataclasses.replace(cfg, coco_annotations=coco_file(cfg.coco_annotations))
    paths = output_paths(cfg.out)
    for p in paths.values():
        check_apart(p, {"--coco-annotations": cfg.coco_annotations, "--hf-dataset": cfg.hf_dataset})
        check_output(p, cfg.force, kind="file", stage="calib")

    if cfg.demo:
        captions, source = (
            demo_captions(),
            {"kind": "demo", "synthetic": True, "path": "vlmquant/data/demo_caption_words.json"},
        )
    elif cfg.coco_annotations is not None:
        captions = coco_captions(cfg.coco_annotations)
        source = {
            "kind": "coco",
            "synthetic": False,
            "path": str(cfg.coco_annotations),
            "sha256": sha256_file(cfg.coco_annotations),
        }
    else:
        captions = hf_captions(cfg.hf_dataset, cfg.text_column or "caption")
        source = {
            "kind": "hf-dataset",
            "synthetic": False,
            "path": str(cfg.hf_dataset),
            "text_column": cfg.text_column or "caption",
        }
        if cfg.hf_dataset.is_file():
            source["sha256"] = sha256_file(cfg.hf_dataset)

    usable, stats = clean(captions)
    name = cfg.coco_annotations or cfg.hf_dataset or "--demo"
    if not usable:
        raise BadInput(f"{name}: no usable captions after cleaning; check the source")
    if len(usable) < cfg.num_samples and not cfg.allow_fewer:
        raise BadInput(
            f"{name}: only {len(usable)} usable captions, {cfg.num_samples} asked; "
            f"lower --num-samples or pass --allow-fewer"
        )
    chosen_idx = sorted(
        random.Random(cfg.seed).sample(range(len(usable)), min(cfg.num_samples, len(usable)))
    )
    chosen = [usable[i] for i in chosen_idx]

    texts = {
        "txt": "".join(c.text + "\n" for c in chosen),
        "jsonl": "".join(
            json.dumps({"text": c.text, "image_id": c.image_id, "file_name": c.file_name}) + "\n"
            for c in chosen
        ),
    }
    manifest = {
        "source": source,
        "counts": {**stats, "selected": len(chosen)},
        "num_samples": cfg.num_samples,
        "seed": cfg.seed,
        "selection": "random.Random(seed).sample over cleaned captions, kept in source order",
        "files": {k: paths[k].name for k in ("txt", "jsonl")},
        "sha256": {},
        "versions": {k: v for k, v in package_versions().items() if k in ("python", "vlmquant")},
    }
    # Write every file to a temporary name first, rename the manifest last: a manifest that
    # exists means the set is complete.
    paths["txt"].parent.mkdir(parents=True, exist_ok=True)
    tmp = {k: p.with_name(f".{p.name}.tmp-{os.getpid()}") for k, p in paths.items()}
    try:
        for key in ("txt", "jsonl"):
            tmp[key].write_text(texts[key])
            manifest["sha256"][paths[key].name] = sha256_file(tmp[key])
        if cfg.demo:  # drawn pictures first: the manifest names a complete set
            write_demo_images(images_dir(cfg.out), {c.file_name for c in chosen})
            manifest["images_dir"] = images_dir(cfg.out).name
        tmp["manifest"].write_text(Manifest.dumps(manifest))
        for key in ("txt", "jsonl", "manifest"):
            os.replace(tmp[key], paths[key])
    finally:
        for t in tmp.values():
            t.unlink(missing_ok=True)
    print(
        f"calib: {len(chosen)} captions ({stats['usable']} usable of {stats['raw']}, "
        f"{stats['duplicates_dropped']} duplicates dropped) -> {cfg.out}"
    )
    return cfg.out
