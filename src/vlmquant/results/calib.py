"""A calibration set's manifest (`<set>.manifest.json` beside the .txt and .jsonl `vlmquant
calib` writes): where its captions came from and how they were chosen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from vlmquant.core.typed import Result


@dataclass
class Source:
    kind: Literal["coco", "hf-dataset", "demo"]
    synthetic: bool
    path: str | None = None  # the COCO annotations or dataset a set was drawn from
    sha256: str | None = None
    text_column: str | None = None  # an HF dataset's caption column


@dataclass
class Counts:
    raw: int
    empty_dropped: int
    duplicates_dropped: int
    usable: int
    selected: int


@dataclass
class Manifest(Result):
    KIND: ClassVar[str] = "calib-manifest"
    VERSION: ClassVar[int] = 1
    WRITER: ClassVar[str] = "vlmquant calib"

    source: Source
    counts: Counts
    num_samples: int
    seed: int
    selection: str
    files: dict[str, str]  # "txt" / "jsonl" -> file name beside the manifest
    sha256: dict[str, str]  # file name -> sha256
    versions: dict[str, str]
    images_dir: str | None = None  # a --demo set's drawn pictures, beside the manifest
