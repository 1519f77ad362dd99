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

import dataclasses
import json
import os
import random
from pathlib import Path

from vlmquant.calib.sources import (
    clean,
    coco_captions,
    coco_file,
    demo_captions,
    hf_captions,
    write_demo_images,
)
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
