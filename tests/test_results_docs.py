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
