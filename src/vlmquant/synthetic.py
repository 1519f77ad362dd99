"""Synthetic data, in one place: pictures drawn from a name (`red_circle`,
`blue_square_on_black`, ...; their content is known and nothing is downloaded), the demo
captions composed from word lists shipped in vlmquant/data (each paired with a drawn picture),
and the shipped paragraphs of plain prose (eval's built-in text, the tiny tokenizer's training
text). Deterministic: the same names and lists give the same data everywhere.
"""

from __future__ import annotations

import json
from importlib import resources

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 40),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}
SHAPES = ("circle", "square", "triangle")


def draw(name: str, size: int = 112):
    """Draw `<colour>_<shape>` or `<colour>_<shape>_on_<colour>` (background white by default)."""
    from PIL import Image, ImageDraw

    parts = name.split("_on_")
    colour, _, shape = parts[0].partition("_")
    background = parts[1] if len(parts) > 1 else "white"
    if colour not in COLOURS or shape not in SHAPES or background not in COLOURS:
        raise ValueError(
            f"cannot draw {name!r}: use <colour>_<shape>[_on_<colour>] with "
            f"colours {', '.join(COLOURS)} and shapes {', '.join(SHAPES)}"
        )
    img = Image.new("RGB", (size, size), COLOURS[background])
    d = ImageDraw.Draw(img)
    m = size // 6
    box = (m, m, size - m, size - m)
    if shape == "circle":
        d.ellipse(box, fill=COLOURS[colour])
    elif shape == "square":
        d.rectangle(box, fill=COLOURS[colour])
    else:
        d.polygon([(size // 2, m), (size - m, size - m), (m, size - m)], fill=COLOURS[colour])
    return img


def drawable(name: str) -> bool:
    try:
        draw(name, size=8)
    except ValueError:
        return False
    return True


def demo_captions() -> list[tuple[int, str, str]]:
    """(index, caption, picture file name) for every subject x action x place of the shipped
    word lists: synthetic, but real pixels through the vision tower for image+text work."""
    words = json.loads(
        resources.files("vlmquant.data").joinpath("demo_caption_words.json").read_text()
    )
    texts = (
        f"{s} {a} {p}."
        for s in words["subjects"]
        for a in words["actions"]
        for p in words["places"]
    )
    return [(i, t, demo_image_name(i)) for i, t in enumerate(texts)]


def demo_image_name(i: int) -> str:
    """The picture paired with demo caption `i`: a shape in a colour (never white on white)."""
    colours = [c for c in COLOURS if c != "white"]
    return f"{colours[i % len(colours)]}_{SHAPES[(i // len(colours)) % len(SHAPES)]}.png"


def paragraphs() -> list[str]:
    """The shipped paragraphs of plain prose, one per non-empty line."""
    text = resources.files("vlmquant.data").joinpath("paragraphs.txt").read_text()
    return [line for line in text.splitlines() if line.strip()]
