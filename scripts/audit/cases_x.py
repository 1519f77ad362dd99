"""Audit round X: inputs written after the typed results and required settings of issue #16,
none of them tried before (issue #18).

Recorded results of another kind, another version or a damaged shape where a stage or the
report reads one (run.json, precision_map.json, check_vllm.json, fidelity and bench JSON, infer
runs, sensitivity files, calibration manifests, results folders), and runs without a setting
they need, from flags and recipes; see run.py for the promise each Case states.
"""

from __future__ import annotations

import json
import shlex
import shutil

from cases_v import clone, edit_json, text_file
from run import ROOT, Case, vq

ROUND = "X"


def _root(fx, d):  # a model root: the tiny checkpoint, the export as variant `v`
    root = d / "m"
    shutil.copytree(fx["tiny"], root / "checkpoints" / "tiny")
    shutil.copytree(fx["export"], root / "quantized" / "v")
    return root


def _report(fx, d, prepare) -> Case:
    root = _root(fx, d)
    prepare(root)
    return Case(vq("report", "--model-root", root), out=root / "reports")


def _json(path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def report_precision_map_old_version(fx, d):
    """report: the variant's precision_map.json says schema vlmquant.precision-map/0"""
    return _report(
        fx,
        d,
        lambda r: edit_json(
            r / "quantized" / "v" / "precision_map.json",
            lambda j: j.update(schema="vlmquant.precision-map/0"),
        ),
    )


def report_precision_map_array(fx, d):
    """report: the variant's precision_map.json holds a JSON array"""
    return _report(fx, d, lambda r: _json(r / "quantized" / "v" / "precision_map.json", []))


def report_check_vllm_no_schema(fx, d):
    """report: check_vllm.json written by an older vlmquant (no schema tag)"""

    def prep(r):
        edit_json(r / "quantized" / "v" / "check_vllm.json", lambda j: j.pop("schema", None))

    return _report(fx, d, prep)


def report_fidelity_is_a_bench_result(fx, d):
    """report: runs/v/fidelity.json is a bench result, not an eval one"""

    def prep(r):
        dst = r / "runs" / "v" / "fidelity.json"
        dst.parent.mkdir(parents=True)
        shutil.copy(ROOT / "docs" / "results" / "bench-3b-h200.json", dst)

    return _report(fx, d, prep)


def report_bench_is_an_eval_result(fx, d):
    """report: runs/bench.json is the sensitivity file (another kind of result)"""

    def prep(r):
        (r / "runs").mkdir()
        shutil.copy(fx["sens"], r / "runs" / "bench.json")

    return _report(fx, d, prep)


def report_infer_run_without_result(fx, d):
    """report: runs/v/infer/run.json tagged infer-run but without its `result`"""

    def prep(r):
        _json(r / "runs" / "v" / "infer" / "run.json", {"schema": "vlmquant.infer-run/1"})

    return _report(fx, d, prep)


def report_run_json_is_a_parity_run(fx, d):
    """report: the variant's run.json says it is a parity run"""
    return _report(
        fx,
        d,
        lambda r: edit_json(
            r / "quantized" / "v" / "run.json", lambda j: j.update(schema="vlmquant.parity-run/1")
        ),
    )


def report_run_json_wrong_field_type(fx, d):
    """report: the variant's run.json has calibration.samples = "16" (a string)"""
    return _report(
        fx,
        d,
        lambda r: edit_json(
            r / "quantized" / "v" / "run.json", lambda j: j["calibration"].update(samples="16")
        ),
    )


def report_manifest_damaged(fx, d):
    """report: the calibration set the variant names has a manifest with source.kind 'web'"""

    def prep(r):
        calib = clone(fx["calib"].parent, d, "c") / fx["calib"].name
        edit_json(
            r / "quantized" / "v" / "run.json", lambda j: j["config"].update(calib=str(calib))
        )
        edit_json(calib.with_suffix(".manifest.json"), lambda j: j["source"].update(kind="web"))

    return _report(fx, d, prep)


def _results(d, name, data) -> Case:
    folder = d / "results"
    _json(folder / name, data)
    return Case(vq("report", "--results", folder), out=folder / name.replace(".json", ".md"))


def results_eval_unknown_key(fx, d):
    """report --results: an eval JSON in eval-x/ with a key no eval writes"""
    folder = d / "results"
    sens = json.loads(fx["sens"].read_text())
    _json(folder / "eval-x" / "eval_a.json", {**sens, "schema": "vlmquant.eval/1"})
    return Case(vq("report", "--results", folder), out=folder / "eval-x.md")


def results_recipes_row_without_fidelity(fx, d):
    """report --results: recipes-x.json whose row lacks `fidelity`"""
    return _results(
        d, "recipes-x.json", {"schema": "vlmquant.recipes/1", "recipes": [{"recipe": "a"}]}
    )


def results_bench_not_json(fx, d):
    """report --results: bench-x.json is not JSON"""
    folder = d / "results"
    folder.mkdir()
    text_file(folder, "bench-x.json", "{ half")
    return Case(vq("report", "--results", folder), out=folder / "bench-x.md")


def results_serve_tagged_bench(fx, d):
    """report --results: serve-x.json holds a serving result tagged as an offline bench"""
    return _results(
        d, "serve-x.json", {"schema": "vlmquant.bench/1", "mode": "serve", "models": []}
    )


def _eval_argv(fx, quantized, out) -> list:
    return vq("eval", "--base", fx["tiny"], "--quantized", quantized, "--out", out, "--no-vllm",
              "--max-samples", 2, "--image-samples", 0)  # fmt: skip


def eval_export_run_json_no_schema(fx, d):
    """eval --quantized: the export's run.json was written by an older vlmquant (no schema)"""
    q = clone(fx["export"], d)
    edit_json(q / "run.json", lambda j: j.pop("schema", None))
    out = d / "e.json"
    return Case(
        _eval_argv(fx, q, out),
        out=out,
        inputs=[q],
    )


def eval_export_run_json_garbage(fx, d):
    """eval --quantized: the export's run.json is not JSON"""
    q = clone(fx["export"], d)
    (q / "run.json").write_text("not json")
    out = d / "e.json"
    return Case(
        vq("eval", "--base", fx["tiny"], "--quantized", q, "--out", out, "--no-vllm"),
        out=out,
        inputs=[q],
    )


def eval_export_with_a_make_tiny_run_json(fx, d):
    """eval --quantized: a checkpoint whose run.json is make-tiny's (not an export record) runs"""
    q = clone(fx["export"], d)
    shutil.copy(fx["tiny"] / "run.json", q / "run.json")
    out = d / "e.json"

    def check():
        r = json.loads(out.read_text())
        return None if r.get("schema") == "vlmquant.eval/1" else f"wrote {list(r)[:3]}"

    return Case(
        _eval_argv(fx, q, out),
        expect=0,
        out=out,
        check=check,
    )


def eval_calib_manifest_old_version(fx, d):
    """eval --calib: the set's manifest says schema vlmquant.calib-manifest/0"""
    c = clone(fx["calib"].parent, d, "c") / fx["calib"].name
    edit_json(
        c.with_suffix(".manifest.json"), lambda j: j.update(schema="vlmquant.calib-manifest/0")
    )
    out = d / "e.json"
    return Case(
        vq(
            "eval",
            "--base",
            fx["tiny"],
            "--quantized",
            fx["export"],
            "--calib",
            c,
            "--out",
            out,
            "--no-vllm",
        ),
        out=out,
    )


def _budget_case(fx, d, edit) -> Case:
    """quantize --kld-budget 0.5 with a copy of the sensitivity file changed by edit(json)."""
    s = d / "s.json"
    shutil.copy(fx["sens"], s)
    edit_json(s, edit)
    out = d / "q"
    argv = vq("quantize", "--model", fx["tiny"], "--calib", fx["calib"], "--calib-size", 16,
              "--kld-budget", 0.5, "--sensitivity", s, "--out", out)  # fmt: skip
    return Case(argv, out=out, inputs=[s])


def quantize_sensitivity_newer_version(fx, d):
    """quantize --kld-budget: the sensitivity file says schema vlmquant.sensitivity/2"""
    return _budget_case(fx, d, lambda j: j.update(schema="vlmquant.sensitivity/2"))


def quantize_sensitivity_cost_string(fx, d):
    """quantize --kld-budget: a unit's cost in the sensitivity file is the string "0.1" """
    return _budget_case(fx, d, lambda j: j["units"][0].update(cost="0.1"))


def quantize_recipe_without_calib(fx, d):
    """quantize --recipe: the [quantize] table names the model but no calib set"""
    r = text_file(d, "r.toml", f'[quantize]\nmodel = "{fx["tiny"]}"\nout = "{d / "q"}"\n')
    return Case(vq("quantize", "--recipe", r), out=d / "q")


def eval_only_base(fx, d):
    """eval --base only"""
    return Case(vq("eval", "--base", fx["tiny"]))


def bench_only_out(fx, d):
    """bench --out only"""
    out = d / "bench-x.json"
    return Case(vq("bench", "--out", out), out=out)


def serve_nothing(fx, d):
    """serve with no flags at all"""
    return Case(vq("serve"))


def infer_only_out_dir(fx, d):
    """infer --out-dir only"""
    return Case(vq("infer", "--out-dir", d / "s"), out=d / "s")


def sensitivity_recipe_without_out(fx, d):
    """sensitivity --recipe: [sensitivity] names base and calib but no out"""
    r = text_file(d, "r.toml", f'[sensitivity]\nbase = "{fx["tiny"]}"\ncalib = "{fx["calib"]}"\n')
    return Case(vq("sensitivity", "--recipe", r))


def pipeline_eval_without_out(fx, d):
    """pipeline: an [eval] table without `out` after a [calib] table (nothing may run)"""
    r = text_file(
        d,
        "r.toml",
        f'[calib]\ndemo = true\nnum_samples = 8\nout = "{d / "c.txt"}"\n'
        f'[eval]\nbase = "{fx["tiny"]}"\nquantized = "{fx["export"]}"\n',
    )
    return Case(vq("pipeline", "--recipe", r), out=d / "c.txt")


def print_config_without_required(fx, d):
    """eval --print-config with no inputs prints the settings (required ones unset)"""
    return Case(vq("eval", "--print-config"), expect=0)


def check_vllm_json_is_tagged(fx, d):
    """check-vllm --json prints a verdict with its schema tag"""
    return _tagged(d, vq("check-vllm", "--json", fx["export"]), "vlmquant.check-vllm/1")


def inspect_json_is_tagged(fx, d):
    """inspect --json prints the summary with its schema tag"""
    return _tagged(d, vq("inspect", "--json", fx["export"]), "vlmquant.inspect/1")


def _tagged(d, argv, schema) -> Case:
    """A command whose stdout is a result: it must carry `schema`."""
    out = d / "stdout.json"

    def check():
        tag = json.loads(out.read_text()).get("schema")
        return None if tag == schema else f"schema {tag!r}"

    return Case(
        ["sh", "-c", f"{shlex.join(map(str, argv))} > {shlex.quote(str(out))}"],
        expect=0,
        check=check,
    )
