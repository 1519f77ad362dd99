"""The prompt suite: the seed's five text prompts, plus image prompts on pictures we draw.

Images are drawn with PIL from a name (`red_circle`, `blue_square`, ...), so their content is
known and nothing is downloaded. A prompts file is jsonl with `text` and optional `image` (a
drawn-image name or a path to an image file, a relative one found beside the prompts file first).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from vlmquant.core.errors import BadInput, not_a_file
from vlmquant.synthetic import draw, drawable


@dataclass(frozen=True)
class Prompt:
    text: str
    image: str | None = None  # drawn-image name or a file path


def load_image(ref: str, size: int = 112):
    """A drawn-image name (drawn `size` pixels square) or an image file path -> PIL RGB image."""
    if drawable(ref):
        return draw(ref, size)
    from PIL import Image

    return Image.open(ref).convert("RGB")


def check_image_file(path: Path, where: str) -> None:
    """An image file must decode (a text file named .png is found here, not after an engine
    start)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise BadInput(
            f"{where}: image {path} is not a readable image ({type(e).__name__}); pass a "
            "PNG or JPEG file"
        ) from None


PROMPT_KEYS = {"text", "image"}


def _image_ref(image: object, folder: Path | None, where: str) -> str:
    """A drawn-image name as it is; an image path as an absolute path, a relative one found
    beside the prompts file first (a suite travels with its pictures), then in the working
    directory."""
    if isinstance(image, str) and drawable(image):
        return image
    path = Path(image).expanduser() if isinstance(image, str) and image else None
    found = None
    if path is not None:
        tries = [path] if path.is_absolute() or folder is None else [folder / path, path]
        found = next((p for p in tries if p.is_file()), None)
    if found is None:
        beside = f" (looked beside the prompts file, in {folder}, and here)" if folder else ""
        raise BadInput(
            f"{where}: image {image!r} is neither a drawable name (e.g. red_circle) nor an "
            f"existing file{beside}"
        )
    check_image_file(found, where)
    return str(found.resolve())


def parse_prompts(lines: list[str], source: str, folder: Path | None = None) -> list[Prompt]:
    prompts = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise BadInput(
                f"{source} line {n}: not JSON ({e.msg}); each line must be "
                '{"text": ..., "image": optional}'
            ) from None
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str) or not obj["text"]:
            raise BadInput(f'{source} line {n}: needs a non-empty "text" string')
        unknown = sorted(set(obj) - PROMPT_KEYS)
        if unknown:  # a misspelt "image" would send the prompt without its picture
            raise BadInput(
                f'{source} line {n}: unknown key "{unknown[0]}"; a prompt has "text" and '
                'optionally "image"'
            )
        image = obj.get("image")
        if image is not None:
            image = _image_ref(image, folder, f"{source} line {n}")
        prompts.append(Prompt(obj["text"], image))
    if not prompts:
        raise BadInput(f'{source}: no prompts; add jsonl lines with a "text" field')
    return prompts


def default_suite() -> list[Prompt]:
    text = resources.files("vlmquant.data").joinpath("prompts.jsonl").read_text()
    return parse_prompts(text.splitlines(), "vlmquant/data/prompts.jsonl")


def load_prompts(path: Path | None) -> list[Prompt]:
    if path is None:
        return default_suite()
    if not path.is_file():
        what = not_a_file(path)
        raise BadInput(f"--prompts {path}: {what}; pass a jsonl file of prompts")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM (Windows editors) is harmless
    except UnicodeDecodeError:
        raise BadInput(f"--prompts {path}: not UTF-8 text; pass a jsonl file of prompts") from None
    return parse_prompts(text.splitlines(), f"--prompts {path}", path.parent)
