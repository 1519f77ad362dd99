"""report: every section present, numbers equal their JSON, links resolve, PNG opens, a stage
that has not run says so with its command."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from PIL import Image


@pytest.fixture(scope="module")
def model_root(tmp_path_factory, tiny_model, quantized):
    from vlmquant.cli import main

    root = tmp_path_factory.mktemp("repo") / "models" / "tiny_qwen2_5_vl"
    shutil.copytree(tiny_model, root / "checkpoints" / "tiny")
    shutil.copytree(quantized(), root / "quantized" / "fp8_fp8_demo")
    fid = root / "runs" / "fp8_fp8_demo" / "fidelity.json"
    assert (
        main(
            [
                "eval",
                "--base",
                str(root / "checkpoints" / "tiny"),
                "--quantized",
                str(root / "quantized" / "fp8_fp8_demo"),
                "--out",
                str(fid),
                "--no-vllm",
                "--max-samples",
                "8",
                "--image-samples",
                "2",
            ]
        )
        == 0
    )
    assert main(["report", "--model-root", str(root)]) == 0
    return root


def test_every_section_is_there(model_root):
    from vlmquant.report.variant import SECTIONS

    text = (model_root / "reports" / "report-fp8_fp8_demo.md").read_text()
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings == list(SECTIONS)


def test_numbers_equal_the_json(model_root):
    from vlmquant.checkpoint.headers import summarize

    text = (model_root / "reports" / "report-fp8_fp8_demo.md").read_text()
    fid = json.loads((model_root / "runs" / "fp8_fp8_demo" / "fidelity.json").read_text())
    text_row = next(line for line in text.splitlines() if line.startswith("| text |"))
    cells = [c.strip() for c in text_row.strip("|").split("|")]
    g = fid["groups"]["text"]
    from vlmquant.eval.render import GROUP_COLUMNS

    assert cells[1] == str(g["tokens"])
    for column, cell in zip(GROUP_COLUMNS[1:], cells[2:], strict=True):
        v = g[column]
        assert cell == (f"{v:.4g}" if isinstance(v, float) else f"[{v[0]:.4g}, {v[1]:.4g}]")
    for w in fid["worst_layers"]:
        assert f"| {w['module']} | {w['activation_error']:.4f} | {w['weight_error']:.4f} |" in text
    size = summarize(model_root / "quantized" / "fp8_fp8_demo")["safetensors_gib"]
    assert f"| fp8_fp8_demo | FP8 (W8A8 E4M3), FP8 KV cache, vision BF16 | {size:.3f} |" in text
    run = json.loads((model_root / "quantized" / "fp8_fp8_demo" / "run.json").read_text())
    assert f"sha256 `{run['inputs']['calib']['sha256']}`" in text
    index = (model_root.parent.parent / "reports" / "index.md").read_text()
    assert f"| {g['ppl_ratio']:.4f} | {g['kld_mean']:.4g} | {g['top1_agreement']:.3f} |" in index


def test_links_resolve_and_png_opens(model_root):
    reports = model_root / "reports"
    text = (reports / "report-fp8_fp8_demo.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert links
    for link in links:
        assert (reports / link).exists(), link
    png = reports / "report-fp8_fp8_demo-layers.png"
    with Image.open(png) as im:
        assert im.size[0] > 100
    index = model_root.parent.parent / "reports" / "index.md"
    for link in re.findall(r"\]\(([^)]+)\)", index.read_text()):
        assert (index.parent / link).exists(), link


def test_missing_stages_say_so_with_the_command(model_root):
    text = (model_root / "reports" / "report-fp8_fp8_demo.md").read_text()
    infer = text.split("## vLLM inference test")[1].split("## ")[0]
    assert "_Not run yet._" in infer and "vlmquant infer --model" in infer
    perf = text.split("## Performance")[1].split("## ")[0]
    assert "_Not run yet._" in perf and "vlmquant bench" in perf
    compat = text.split("## vLLM compatibility")[1]
    # the verdict quantize recorded with the export, not a live check while rendering
    assert "PASS:" in compat and "Recorded by quantize" in compat


def test_no_quantized_variant_is_bad_input(tmp_path, cli):
    (tmp_path / "m" / "quantized").mkdir(parents=True)
    code, err = cli("report", "--model-root", tmp_path / "m")
    assert code == 2 and "no finished quantized variant" in err


def test_performance_section_reads_the_bench_json_goals_included():
    from pathlib import Path

    from vlmquant.bench.render import report_section
    from vlmquant.results.bench import BenchResult

    src = Path(__file__).resolve().parents[1] / "docs" / "results" / "bench-3b-h200.json"
    bench = json.loads(src.read_text())
    text = "\n".join(report_section(BenchResult.read(src), "fp8_fp8_demo"))
    (key,) = bench["ratios"]
    measured = bench["ratios"][key]["single_stream_tok_s"]
    assert f"| {key} | single-stream decode tok/s | >= 1.5x | {measured:.2f}x |" in text
    fp8 = bench["results"][1]
    assert f"{100 * fp8['roofline_fraction']:.0f}% |" in text and "Speed goals:" in text


def test_performance_section_shows_only_its_variant_and_the_baseline():
    """One bench.json with two variants: `fp8_fp8_demo`'s section must not show (or take the
    ratio line of) `fp8_fp8_demo_vlm`, whose name starts with it."""
    import copy
    from pathlib import Path

    from vlmquant.bench.render import report_section
    from vlmquant.results.bench import BenchResult

    src = Path(__file__).resolve().parents[1] / "docs" / "results" / "bench-3b-h200.json"
    bench = json.loads(src.read_text())
    vlm = copy.deepcopy(bench["results"][1])
    vlm["model"] = vlm["model"] + "_vlm"
    vlm["single_stream"]["tok_s"] = 1.0
    bench["results"].append(vlm)
    (key,) = bench["ratios"]
    bench["ratios"][key.replace("fp8_fp8_demo", "fp8_fp8_demo_vlm", 1)] = {
        "single_stream_tok_s": 0.001
    }
    text = "\n".join(report_section(BenchResult.parse(bench), "fp8_fp8_demo"))
    assert "fp8_fp8_demo_vlm" not in text and "0.00x" not in text
    assert "| fp8_fp8_demo [" in text and "Speed goals:" in text


def test_an_unwritable_index_writes_nothing(model_root, tmp_path, cli):
    """The index path is checked before any page is written; the earlier reports stay."""
    reports = model_root / "reports"
    before = {p.name: p.read_bytes() for p in reports.iterdir()}
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, err = cli("report", "--model-root", model_root, "--index", blocker / "index.md")
    assert code == 2 and "cannot be written" in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in reports.iterdir()} == before
    assert not list(model_root.glob(".report-staging-*"))
