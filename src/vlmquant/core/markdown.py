"""Small helpers for the markdown the stages render."""

from pathlib import Path


def table_cell(text: object, width: int = 80) -> str:
    """One line, pipes escaped, cut to `width` characters with an ellipsis."""
    flat = " ".join(str(text).split()).replace("|", "\\|")
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def counts_text(counts: dict[str, int]) -> str:
    """`{"a": 2, "b": 1}` -> "a x2, b x1" (layer methods, kernels)."""
    return ", ".join(f"{k} x{v}" for k, v in counts.items())


def notes(folder: Path) -> list[str]:
    """`notes.md` in a results folder, as lines to put under a page's title (context only:
    the numbers on a page come from its JSON)."""
    f = folder / "notes.md"
    return [f.read_text().strip(), ""] if f.is_file() else []
