"""Small helpers for the markdown the stages render."""


def table_cell(text: object, width: int = 80) -> str:
    """One line, pipes escaped, cut to `width` characters with an ellipsis."""
    flat = " ".join(str(text).split()).replace("|", "\\|")
    return flat if len(flat) <= width else flat[: width - 1] + "…"
