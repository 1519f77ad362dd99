"""Typed results (core/typed.py, vlmquant/results/): every committed result reads through its
type, a file of another shape or version is one line of bad input naming the file and the
field, and a stage cannot write a shape it did not declare."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vlmquant.core.errors import BadInput
from vlmquant.core.typed import ShapeError
from vlmquant.results.bench import BenchResult, ServeResult
from vlmquant.results.check import Verdict
from vlmquant.results.checkpoint import Inspect
from vlmquant.results.eval import EvalResult
from vlmquant.results.infer import Compare, Generation, InferRun
from vlmquant.results.quantize import BudgetChoice, QuantizeRun
from vlmquant.results.recipes import Recipes
from vlmquant.results.runs import MakeTinyRun, ParityRun
from vlmquant.results.sensitivity import Sensitivity

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
TYPES = {
    t.schema(): t
    for t in (
        BenchResult,
        ServeResult,
        Verdict,
        Inspect,
        EvalResult,
        Compare,
        Generation,
        InferRun,
        QuantizeRun,
        Recipes,
        MakeTinyRun,
        ParityRun,
        Sensitivity,
    )  # fmt: skip
}


def test_every_committed_result_reads_through_its_type():
    files = sorted(RESULTS.rglob("*.json"))
    assert len(files) > 50
    for f in files:
        tag = json.loads(f.read_text())["schema"]
        TYPES[tag].read(f)  # raises BadInput naming the file on any mismatch


def _verdict(**change) -> dict:
    v = {"checkpoint": "c", "architecture": "a", "vllm_version": "0.25.0", "vllm_build": "gpu",
         "ok": True, "tensors_checked": 3, "findings": []}  # fmt: skip
    return {**v, **change}


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (_verdict(tensors_checked="3"), "tensors_checked: expected an integer, found '3'"),
        (_verdict(ok=1), "ok: expected true or false, found 1"),
        (_verdict(vllm_build="tpu"), "vllm_build: expected one of ['cpu', 'gpu']"),
        (_verdict(extra=1), "unexpected key 'extra'"),
        ({k: v for k, v in _verdict().items() if k != "ok"}, "ok: missing"),
        (_verdict(findings=[{"rule": "r"}]), "findings[0].severity: missing"),
        (_verdict(schema="vlmquant.check-vllm/0"), "schema 'vlmquant.check-vllm/0'"),
    ],
)
def test_a_result_of_another_shape_names_the_field(data, says):
    with pytest.raises(ShapeError) as e:
        Verdict.parse(data)
    assert says in str(e.value)


def test_reading_names_the_file_and_the_stage_that_writes_it(tmp_path):
    f = tmp_path / "v.json"
    f.write_text(json.dumps({"schema": Verdict.schema(), **_verdict(ok="yes")}))
    with pytest.raises(BadInput) as e:
        Verdict.read(f)
    assert str(e.value).startswith(f"{f}: ok: expected true or false")
    assert "vlmquant check-vllm" in str(e.value)
    f.write_text(json.dumps(_verdict()))  # no schema tag: not something this version wrote
    with pytest.raises(BadInput, match="not a vlmquant.check-vllm/1 result"):
        Verdict.read(f)


def test_a_stage_cannot_write_a_shape_it_did_not_declare():
    good = {"budget": 0.03, "whole_export_kld": 0.1, "predicted_kld": 0.02, "kept_bf16": [],
            "kv_cache_fp8": True, "weight_bytes_saved": 1,
            "weight_bytes_saved_by_whole_export": 2, "share_of_saving_kept": 0.5}  # fmt: skip
    text = BudgetChoice.dumps(good)
    assert json.loads(text)["schema"] == "vlmquant.kld-budget/1"
    assert "measured" not in json.loads(text)  # an optional field left None is left out
    with pytest.raises(TypeError, match="BudgetChoice being written: kept_bf16"):
        BudgetChoice.dumps({**good, "kept_bf16": [{"unit": "x"}]})


def test_report_results_on_a_result_of_another_version_is_one_line(tmp_path, cli):
    shutil.copy(RESULTS / "bench-3b-h200.json", tmp_path / "bench-x.json")
    data = json.loads((tmp_path / "bench-x.json").read_text())
    data["schema"] = "vlmquant.bench/0"
    (tmp_path / "bench-x.json").write_text(json.dumps(data))
    code, err = cli("report", "--results", tmp_path)
    assert code == 2 and err.count("\n") == 1
    assert f"{tmp_path / 'bench-x.json'}: not a vlmquant.bench/1 result" in err
    assert not (tmp_path / "bench-x.md").exists()


def test_every_result_names_a_command_that_exists_as_its_writer():
    """The fix a bad result's message gives is a command a user can run (audit round X: the
    recipe comparison named `vlmquant compare collect`, which is no subcommand)."""
    import importlib
    import shlex

    from vlmquant.results.calib import Manifest
    from vlmquant.results.quantize import PrecisionMap
    from vlmquant.stages import STAGES

    root = Path(__file__).resolve().parents[1]
    for cls in [*TYPES.values(), Manifest, PrecisionMap, BudgetChoice]:
        argv = shlex.split(cls.WRITER)
        if argv[0] == "vlmquant":
            assert argv[1] in {s.name for s in STAGES}, cls.WRITER
        elif argv[:2] == ["python", "-m"]:
            importlib.import_module(argv[2])
        else:
            assert argv[0] == "bash" and (root / argv[1]).is_file(), cls.WRITER
