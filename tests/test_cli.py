"""The CLI lists every stage, explains each, and runs as `python -m vlmquant`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vlmquant.stages import STAGES


def test_python_m_vlmquant_help_lists_stages():
    out = subprocess.run(
        [sys.executable, "-m", "vlmquant", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for stage in STAGES:
        assert stage.name in out


@pytest.mark.parametrize("stage", [s.name for s in STAGES])
def test_stage_help_explains_flags(stage, capsys):
    import dataclasses
    import importlib

    from vlmquant.cli import main

    with pytest.raises(SystemExit) as e:
        main([stage, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    spec = next(s for s in STAGES if s.name == stage)
    for field in dataclasses.fields(getattr(importlib.import_module(spec.module), spec.settings)):
        positional = field.metadata.get("positional")
        assert (field.name if positional else "--" + field.name.replace("_", "-")) in out


def test_unknown_stage_is_usage_error(cli):
    code, err = cli("frobnicate")
    assert code == 2 and "invalid choice" in err


def test_bad_recipe_is_bad_input(cli, tmp_path):
    code, err = cli("calib", "--recipe", tmp_path / "missing.toml")
    assert code == 2 and "no such file" in err
    (tmp_path / "bad.toml").write_text("[calib\n")
    code, err = cli("calib", "--recipe", tmp_path / "bad.toml")
    assert code == 2 and "not valid TOML" in err


def test_every_shipped_recipe_builds_its_stage_settings():
    """Each table of each recipe in recipes/ builds its stage's settings with the types the
    stage expects (a TOML list of paths becomes a list of Paths, a lone string a list of one)."""
    import dataclasses
    import importlib
    import typing
    from pathlib import Path

    from vlmquant.core.config import _base_type, build, load_recipe

    root = Path(__file__).resolve().parents[1] / "recipes"
    stages = {s.name: s for s in STAGES}
    recipes = sorted(root.glob("*/*.toml"))
    assert recipes
    for path in recipes:
        recipe = load_recipe(path)
        for section in recipe:
            spec = stages[section.replace("_", "-")]
            cls = getattr(importlib.import_module(spec.module), spec.settings)
            settings = build(cls, recipe, {}, section)
            hints = typing.get_type_hints(cls)
            for field in dataclasses.fields(cls):
                value, tp = getattr(settings, field.name), _base_type(hints[field.name])
                if tp is Path and value is not None:
                    assert isinstance(value, Path), (path.name, field.name)
                if typing.get_args(tp) == (Path,):
                    assert all(isinstance(v, Path) for v in value), (path.name, field.name)
    bench = build(
        getattr(importlib.import_module(stages["bench"].module), stages["bench"].settings),
        {"bench": {"model": "one/ckpt"}},
        {},
        "bench",
    )
    assert bench.model == [Path("one/ckpt")]


def test_recipe_tables_types_and_choices_are_checked(cli, tmp_path):
    cases = [
        ("[quantise]\ncalib_size = 16\n", "table [quantise] is no stage"),
        ('[calib]\nforce = "false"\n', "force = 'false': must be true or false"),
        ('[calib]\nnum_samples = "64"\n', "num_samples = '64': must be an integer"),
        ('[eval]\nkernels = "tpu"\n', "kernels = 'tpu': not one of"),
    ]
    for i, (text, message) in enumerate(cases):
        recipe = tmp_path / f"r{i}.toml"
        recipe.write_text(text)
        stage = "eval" if "[eval]" in text else "calib"
        code, err = cli(stage, "--recipe", recipe)
        assert code == 2 and message in err and err.count("\n") == 1, (text, err)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe[calib]")
    code, err = cli("calib", "--recipe", binary)
    assert code == 2 and "not UTF-8" in err


def test_print_config_is_a_recipe_that_gives_the_same_settings(tmp_path, capsys):
    import tomllib

    from vlmquant.cli import main

    recipe = tmp_path / "r.toml"
    recipe.write_text('[eval]\nmax_samples = 5\nkernels = "cpu"\n')
    assert main(["eval", "--recipe", str(recipe), "--seq-len", "64", "--print-config"]) == 0
    printed = capsys.readouterr().out
    table = tomllib.loads(printed)["eval"]
    assert (table["max_samples"], table["kernels"], table["seq_len"]) == (5, "cpu", 64)
    again = tmp_path / "again.toml"
    again.write_text(printed)
    assert main(["eval", "--recipe", str(again), "--print-config"]) == 0
    assert capsys.readouterr().out == printed


def test_help_shows_the_allowed_values(capsys):
    import pytest

    from vlmquant.cli import main

    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "--kernels {auto,cuda,cpu,modelopt}" in capsys.readouterr().out


def test_shipped_recipes_write_where_report_reads():
    """report reads models/<model>/runs/<variant>/infer (with compare.json, so --compare) and
    runs/<variant>/fidelity.json; a recipe writing elsewhere leaves its report "Not run yet"."""
    import tomllib
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*/*.toml")):
        recipe = tomllib.loads(path.read_text())
        if "quantize" not in recipe:
            continue
        out = Path(recipe["quantize"]["out"])
        runs = out.parent.parent / "runs" / out.name
        if "infer" in recipe:
            assert Path(recipe["infer"]["out_dir"]) == runs / "infer", path.name
            assert recipe["infer"].get("compare"), path.name
        if "eval" in recipe:
            assert Path(recipe["eval"]["out"]) == runs / "fidelity.json", path.name


def test_required_settings_are_marked_in_help_and_checked_first(cli, capsys):
    """A setting a run cannot do without says so in --help, and a run without it is one line of
    exit 2 naming the flag (from either source: flag or recipe), before the stage starts."""
    import dataclasses
    import importlib

    from vlmquant.cli import main
    from vlmquant.stages import STAGES

    checked = 0
    for stage in STAGES:
        cls = getattr(importlib.import_module(stage.module), stage.settings)
        required = [f for f in dataclasses.fields(cls) if f.metadata.get("required")]
        if not required:
            continue
        with pytest.raises(SystemExit):
            main([stage.name, "--help"])
        shown = " ".join(capsys.readouterr().out.split())  # help wraps its lines
        assert shown.count("(required: this flag or the recipe's key)") == len(required), stage.name
        code, err = cli(stage.name)
        flag = "--" + required[0].name.replace("_", "-")
        assert code == 2 and err.count("\n") == 1, (stage.name, err)
        assert f"{stage.name}: {flag} is required" in err, err
        checked += 1
    assert checked >= 7
