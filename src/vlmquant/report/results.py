"""Every page of a results folder (docs/results), rendered from the result files beside it.

    vlmquant report --results docs/results [--readme README.md]           # write the pages
    vlmquant report --results docs/results [--readme README.md] --check   # exit 2 if one is stale

One registry of page kinds, found by their sources (not by the pages, so a new result gets its
page): `bench-*.json` / `serve-*.json` (offline or serving benchmark, a PNG beside when it has a
concurrency matrix), `bench-*.toml` (a record of speed attempts), and folders `quantize-*/`,
`infer-*/`, `eval-*/`, `parity-*/` of a stage's recorded runs, and `recipes-*.json` there or
one folder down (recipe comparison, with its size-vs-KLD PNG). A page's first line (its title) and a
quantize page's code revision for a GPU host without .git are the page's own, kept when it is
re-rendered; every figure under them comes from the sources. A `.md` page no kind renders is an
error: nothing on these pages is typed by hand.
"""

from __future__ import annotations

import importlib
import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmquant.core.errors import BadInput
from vlmquant.core.outputs import write_text_atomic
from vlmquant.core.typed import SCHEMA_KEY

NOT_PAGES = {"README.md", "notes.md"}  # prose a person wrote, beside the rendered pages


@dataclass(frozen=True)
class Page:
    path: Path  # the .md
    kind: str
    source: Path  # the result file or folder it is rendered from
    render: Callable[[], str]
    plot: Callable[[Path], None] | None = None  # writes the PNG at `png`
    png: Path | None = None


def _title(page: Path, default: str) -> str:
    if page.is_file():
        first = page.read_text(encoding="utf-8").split("\n", 1)[0]
        if first.startswith("# "):
            return first[2:]
    return default


def _card(folder: Path) -> str:
    """The card named in a run folder's environment.txt (first line, nvidia-smi's name), or ''."""
    env = folder / "environment.txt"
    if env.is_file():
        first = env.read_text(encoding="utf-8").split("\n", 1)[0]
        return first.split(",")[0].strip()
    return ""


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BadInput(f"{path}: not a readable result JSON ({e}); restore it from git") from e


def _bench(src: Path) -> Page:
    from vlmquant.bench import render as bench_render
    from vlmquant.bench import serve_render
    from vlmquant.results.bench import BenchResult, ServeResult

    page = src.with_suffix(".md")
    raw = _json(src)  # read once: its schema tag says which of the two it is
    if isinstance(raw, dict) and raw.get(SCHEMA_KEY) == ServeResult.schema():
        serve = ServeResult.checked(raw, src)
        return Page(page, "serve", src, lambda: serve_render.render(serve))
    data = BenchResult.checked(raw, src)
    png = page.with_suffix(".png") if bench_render.has_matrix(data) else None
    return Page(
        page,
        "bench",
        src,
        lambda: bench_render.render(data, png.name if png else None),
        (lambda p: bench_render.plot(data, p)) if png else None,
        png,
    )


def _attempts(src: Path) -> Page:
    from vlmquant.bench import attempts

    spec = tomllib.loads(src.read_text(encoding="utf-8"))
    return Page(src.with_suffix(".md"), "attempts", src, lambda: attempts.render(spec, src.parent))


def _quantize(folder: Path) -> Page:
    from vlmquant.quantize import gpu_report

    page = folder.with_suffix(".md")
    rev = None
    if page.is_file():  # the revision given when the page was first rendered (no .git there)
        m = re.search(r"^- code: (\S+)", page.read_text(encoding="utf-8"), re.M)
        rev = m.group(1) if m else None
    return Page(page, "quantize", folder, lambda: gpu_report.render(folder, rev))


def _infer(folder: Path) -> Page:
    from vlmquant.infer import render as infer_render

    page = folder.with_suffix(".md")
    title = _title(page, f"vLLM inference — {_card(folder) or folder.name}")
    return Page(page, "infer", folder, lambda: infer_render.render(folder, title))


def _files_page(kind: str, pattern: str, heading: str) -> Callable[[Path], Page | None]:
    def make(folder: Path) -> Page | None:
        files = sorted(folder.glob(pattern))
        if not files:
            return None
        module = importlib.import_module(f"vlmquant.{kind}.render")
        page = folder.with_suffix(".md")
        title = _title(page, f"{heading} — {_card(folder) or folder.name}")
        return Page(page, kind, folder, lambda: module.render(title, files))

    return make


def _recipes(src: Path) -> Page:
    from vlmquant.eval import recipes_render
    from vlmquant.results.recipes import Recipes

    data = Recipes.read(src)
    png = src.with_suffix(".png")
    return Page(
        src.with_suffix(".md"),
        "recipes",
        src,
        lambda: recipes_render.render(data, png.name),
        lambda p: recipes_render.plot(data, p),
        png,
    )


FOLDER_KINDS: dict[str, Callable[[Path], Page | None]] = {
    "quantize-": _quantize,
    "infer-": _infer,
    "eval-": _files_page("eval", "eval_*.json", "Fidelity"),
    "parity-": _files_page("parity", "parity_*.json", "hf_ptq parity"),
}


def pages(root: Path) -> list[Page]:
    """Every page the sources in `root` (and recipes-*.json one folder down) render."""
    found: list[Page] = []
    for src in sorted([*root.glob("bench-*.json"), *root.glob("serve-*.json")]):
        found.append(_bench(src))
    found += [_attempts(src) for src in sorted(root.glob("bench-*.toml"))]
    found += [_recipes(src) for src in sorted(root.glob("recipes-*.json"))]
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for prefix, make in FOLDER_KINDS.items():
            if folder.name.startswith(prefix):
                page = make(folder)
                if page is not None:
                    found.append(page)
        found += [_recipes(src) for src in sorted(folder.glob("recipes-*.json"))]
    return found


def orphans(root: Path, found: list[Page]) -> list[Path]:
    """Markdown pages in the results folder that no source renders (typed by hand)."""
    rendered = {p.path for p in found}
    candidates = [*root.glob("*.md"), *root.glob("*/recipes-*.md")]
    return sorted(p for p in candidates if p.name not in NOT_PAGES and p not in rendered)


def stale(root: Path, readme: Path | None = None) -> list[str]:
    """Names of the pages (and the README's headline block) that differ from their rendering,
    and of hand-made pages; empty when every page is current."""
    found = pages(root)
    out = [f"{p.relative_to(root)} (no source renders it)" for p in orphans(root, found)]
    for page in found:
        if not page.path.is_file() or page.render() != page.path.read_text(encoding="utf-8"):
            out.append(str(page.path.relative_to(root)))
        elif page.png is not None and not page.png.is_file():
            out.append(f"{page.png.relative_to(root)} (missing)")
    if readme is not None and _with_headline(readme, root) != readme.read_text(encoding="utf-8"):
        out.append(f"{readme} (headline block)")
    return out


def _with_headline(readme: Path, root: Path) -> str:
    from vlmquant.report import headline

    text = readme.read_text(encoding="utf-8")
    start, end = headline.block(text, f"--readme {readme}")
    return text[:start] + "\n" + headline.render(root) + "\n" + text[end:]


def _current(page: Page) -> bool:
    """A plot newer than its page's source is kept (re-plotting changes its bytes only)."""
    png = page.png
    return png is not None and png.is_file() and png.stat().st_mtime >= page.source.stat().st_mtime


def run(root: Path, readme: Path | None, check: bool) -> list[Path]:
    """Check (`check`) or write every page of `root`; returns the pages written."""
    if not root.is_dir():
        raise BadInput(f"--results {root}: not a folder; pass a results folder (docs/results)")
    if readme is not None and not readme.is_file():
        raise BadInput(f"--readme {readme}: no such file; pass the README holding the headline")
    found = pages(root)
    if not found and not orphans(root, []):
        raise BadInput(
            f"--results {root}: no results in it (bench-*.json, serve-*.json, bench-*.toml, "
            "quantize-*/, infer-*/, eval-*/, parity-*/, recipes-*.json); pass the results "
            "folder, e.g. docs/results"
        )
    if check:
        bad = stale(root, readme)
        if bad:
            raise BadInput(
                f"--results {root}: {len(bad)} page(s) stale: {', '.join(bad)}; rerun without "
                "--check to render them"
            )
        return []
    hand = orphans(root, found)
    if hand:
        raise BadInput(
            f"--results {root}: {', '.join(str(p.relative_to(root)) for p in hand)} has no "
            "source; commit the result it was rendered from, or remove the page"
        )
    texts = [(page, page.render()) for page in found]  # everything first, then written
    written = []
    for page, text in texts:
        if page.plot is not None and page.png is not None and not _current(page):
            page.plot(page.png)
        write_text_atomic(page.path, text)
        written.append(page.path)
    if readme is not None:
        write_text_atomic(readme, _with_headline(readme, root))
        written.append(readme)
    return written
