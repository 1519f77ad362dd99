"""Pages in docs/results are rendered from the JSON committed beside them, never by hand."""

from __future__ import annotations

import re
from pathlib import Path

from vlmquant.quantize import gpu_report

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def test_quantize_gpu_pages_match_their_json():
    pages = sorted(RESULTS.glob("quantize-3b-*.md"))
    assert pages, "no quantize GPU results committed"
    for page in pages:
        text = page.read_text()
        rev = re.search(r"^- code: (\S+)", text, re.M).group(1)
        assert gpu_report.render(page.with_suffix(""), rev) == text, page.name


def _title(page: Path) -> str:
    return page.read_text().splitlines()[0].removeprefix("# ")


def test_bench_eval_and_infer_pages_match_their_json():
    import json
    import tomllib

    from vlmquant.bench import attempts
    from vlmquant.bench import render as bench_render
    from vlmquant.eval import render as eval_render
    from vlmquant.infer import render as infer_render

    seen = set()
    for page in sorted(RESULTS.glob("bench-*.md")):
        src = page.with_suffix(".json")
        if src.is_file():
            data = json.loads(src.read_text())
            png = page.with_suffix(".png").name if bench_render.has_matrix(data) else None
            assert bench_render.render(data, png) == page.read_text(), page.name
            seen.add(page.name)
    for spec in sorted(RESULTS.glob("bench-*.toml")):
        page = spec.with_suffix(".md")
        assert attempts.render(tomllib.loads(spec.read_text()), RESULTS) == page.read_text()
        seen.add(page.name)
    assert seen == {p.name for p in RESULTS.glob("bench-*.md")}, "a bench page without a source"
    serve_pages = sorted(RESULTS.glob("serve-*.md"))
    assert serve_pages, "no serving benchmark committed"
    for page in serve_pages:
        data = json.loads(page.with_suffix(".json").read_text())
        assert data["mode"] == "serve" and data["engine_starts"] >= 3, page.name
        assert bench_render.render_page(data) == page.read_text(), page.name
    for page in sorted(RESULTS.glob("eval-*.md")):
        files = sorted(page.with_suffix("").glob("eval_*.json"))
        assert eval_render.render(_title(page), files) == page.read_text(), page.name
    infer_pages = sorted(RESULTS.glob("infer-*.md"))
    assert infer_pages, "no infer GPU results committed"
    for page in infer_pages:
        assert infer_render.render(page.with_suffix(""), _title(page)) == page.read_text()


def test_parity_pages_match_their_json():
    from vlmquant.parity import render as parity_render

    pages = sorted(RESULTS.glob("parity-*.md"))
    assert pages, "no parity GPU results committed"
    for page in pages:
        files = sorted(page.with_suffix("").glob("parity_*.json"))
        assert parity_render.render(_title(page), files) == page.read_text(), page.name


def test_readme_headline_is_rendered_from_the_results():
    from vlmquant.report import headline

    readme = RESULTS.parents[1] / "README.md"
    assert headline.main(["--check", str(readme)]) == 0, (
        "README's headline block is stale: python -m vlmquant.report.headline README.md"
    )


def test_recipe_comparison_pages_match_their_json():
    import json

    from vlmquant.eval import compare

    pages = sorted((RESULTS / "recipes-trained").glob("recipes-*.md"))
    assert pages, "no recipe comparison committed"
    for page in pages:
        data = json.loads(page.with_suffix(".json").read_text())
        assert compare.render(data, page.with_suffix(".png").name) == page.read_text(), page.name
        assert page.with_suffix(".png").is_file(), page.name


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
