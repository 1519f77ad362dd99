"""calib: counts, cleaning, determinism, and every bad-input case, on a COCO-format file."""

from __future__ import annotations

import json

import pytest


def coco(path, captions):
    """Write a small COCO-captions-format file: captions is a list of (image_id, text)."""
    ids = sorted({i for i, _ in captions})
    data = {
        "info": {},
        "images": [{"id": i, "file_name": f"{i:012d}.jpg"} for i in ids],
        "annotations": [
            {"id": n, "image_id": i, "caption": c} for n, (i, c) in enumerate(captions)
        ],
    }
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def annotations(tmp_path):
    caps = [(i % 40, f"A  photo of object {i}\n near a  tree. ") for i in range(200)]
    caps += [(1, "A photo of object 3 near a tree."), (2, "   "), (3, "")]  # 1 dup, 2 empty
    return coco(tmp_path / "captions_train2017.json", caps)


def test_builds_txt_jsonl_manifest(annotations, tmp_path, cli):
    out = tmp_path / "calib" / "coco.txt"
    assert (
        cli("calib", "--coco-annotations", annotations, "--num-samples", 50, "--out", out)[0] == 0
    )
    lines = out.read_text().splitlines()
    assert len(lines) == 50 == len(set(lines))
    assert all(line == " ".join(line.split()) and line for line in lines)
    rows = [json.loads(x) for x in (tmp_path / "calib" / "coco.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == lines
    assert all(r["file_name"] == f"{r['image_id']:012d}.jpg" for r in rows)
    manifest = json.loads((tmp_path / "calib" / "coco.manifest.json").read_text())
    assert manifest["counts"] == {
        "raw": 203,
        "empty_dropped": 2,
        "duplicates_dropped": 1,
        "usable": 200,
        "selected": 50,
    }
    assert manifest["seed"] == 1234 and manifest["source"]["synthetic"] is False
    assert len(manifest["source"]["sha256"]) == 64


def test_same_seed_same_bytes_other_seed_other_sample(annotations, tmp_path, cli):
    outs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        out = tmp_path / name / "c.txt"
        assert (
            cli(
                "calib",
                "--coco-annotations",
                annotations,
                "--num-samples",
                20,
                "--seed",
                seed,
                "--out",
                out,
            )[0]
            == 0
        )
        outs[name] = (out.read_bytes(), out.with_suffix(".jsonl").read_bytes())
    assert outs["a"] == outs["b"] and outs["a"] != outs["c"]


def test_demo_set_is_labelled_synthetic(tmp_path, cli):
    out = tmp_path / "demo.txt"
    assert cli("calib", "--demo", "--num-samples", 4096, "--out", out)[0] == 0
    assert len(out.read_text().splitlines()) == 4096
    assert json.loads(out.with_suffix(".manifest.json").read_text())["source"]["synthetic"]


def test_hf_dataset_jsonl_source(tmp_path, cli):
    src = tmp_path / "ds"
    src.mkdir()
    (src / "part.jsonl").write_text(
        "".join(
            json.dumps({"caption": f"caption number {i}", "image_id": i}) + "\n" for i in range(30)
        )
    )
    out = tmp_path / "hf.txt"
    assert cli("calib", "--hf-dataset", src, "--num-samples", 10, "--out", out)[0] == 0
    assert len(out.read_text().splitlines()) == 10
    code, err = cli(
        "calib", "--hf-dataset", src, "--text-column", "text", "--out", tmp_path / "x.txt"
    )
    assert code == 2 and "--text-column" in err


def _bad(tmp_path, name, content):
    p = tmp_path / name
    p.write_text(content)
    return p


@pytest.mark.parametrize(
    "case,expect",
    [
        ("missing", "no such file"),
        ("not-json", "not JSON"),
        ("no-captions", "no annotations[].caption"),
        ("too-few", "only 200 usable captions, 4096 asked"),
        ("two-sources", "exactly one source"),
    ],
)
def test_bad_input_exit_2_one_line_nothing_written(case, expect, annotations, tmp_path, cli):
    src = {
        "missing": ["--coco-annotations", tmp_path / "nope.json"],
        "not-json": ["--coco-annotations", _bad(tmp_path, "x.json", "{not json")],
        "no-captions": [
            "--coco-annotations",
            _bad(tmp_path, "i.json", '{"annotations": [{"bbox": [1, 2, 3, 4]}]}'),
        ],
        "too-few": ["--coco-annotations", annotations],
        "two-sources": ["--coco-annotations", annotations, "--demo"],
    }[case]
    out = tmp_path / "out" / "c.txt"
    code, err = cli("calib", *src, "--out", out)
    assert code == 2, err
    assert expect in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_allow_fewer_and_force(annotations, tmp_path, cli):
    out = tmp_path / "c.txt"
    assert cli("calib", "--coco-annotations", annotations, "--allow-fewer", "--out", out)[0] == 0
    assert len(out.read_text().splitlines()) == 200
    code, err = cli("calib", "--coco-annotations", annotations, "--allow-fewer", "--out", out)
    assert code == 2 and "--force" in err
    assert (
        cli(
            "calib", "--coco-annotations", annotations, "--num-samples", 5, "--force", "--out", out
        )[0]
        == 0
    )
    assert len(out.read_text().splitlines()) == 5


def test_recipe_fills_unset_flags_and_cli_wins(annotations, tmp_path, cli):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        f'[calib]\ncoco_annotations = "{annotations}"\nnum_samples = 30\n'
        f'out = "{tmp_path / "r.txt"}"\n'
    )
    assert cli("calib", "--recipe", recipe)[0] == 0
    assert len((tmp_path / "r.txt").read_text().splitlines()) == 30
    assert cli("calib", "--recipe", recipe, "--num-samples", 12, "--force")[0] == 0
    assert len((tmp_path / "r.txt").read_text().splitlines()) == 12
    recipe.write_text("[calib]\nnum_sample = 3\n")
    code, err = cli("calib", "--recipe", recipe)
    assert code == 2 and "unknown setting" in err
