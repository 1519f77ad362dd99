"""The CLI lists every stage, explains each, and runs as `python -m vlmquant`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vlmquant.cli import STAGES


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
