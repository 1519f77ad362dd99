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


def test_bench_and_eval_pages_match_their_json():
    from vlmquant.bench import render as bench_render
    from vlmquant.eval import render as eval_render

    for page in sorted(RESULTS.glob("bench-*.md")):
        data = __import__("json").loads(page.with_suffix(".json").read_text())
        assert bench_render.render(data, page.with_suffix(".png").name) == page.read_text()
    for page in sorted(RESULTS.glob("eval-*.md")):
        title = page.read_text().splitlines()[0].removeprefix("# ")
        files = sorted(page.with_suffix("").glob("eval_*.json"))
        assert eval_render.render(title, files) == page.read_text()
