"""Run every stage a recipe names, in pipeline order, skipping the ones that are current.

    vlmquant pipeline --recipe recipes/qwen2_5_vl_3b_instruct/fp8_fp8_coco2017.toml

Order: make-tiny -> calib -> quantize -> infer -> eval -> bench (only with a CUDA GPU) ->
report (whenever the recipe quantizes). A stage is current when its settings and everything
upstream are unchanged since it last ran and its output exists: each stage's key hashes its
resolved settings, its external inputs (the COCO annotations, the base checkpoint's files),
and the key of the stage before it, so changing the calibration seed reruns calib and every
stage after it, and nothing before. Each key lives beside the output it describes
(`.<output name>.pipeline.json` in the output's folder), so it does not depend on where you run
the pipeline, and recipes sharing a base model or calib set share it; `--state FILE` keeps all
keys in one file instead. `--force-stage NAME` reruns one stage (and so the ones after it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlmquant.core.config import build, check_required, load_recipe, setting, to_jsonable
from vlmquant.core.errors import BadInput
from vlmquant.core.outputs import check_output, write_text_atomic

ORDER = ("make-tiny", "calib", "quantize", "infer", "eval", "bench", "report")
# stage outputs named by a file inside the folder the stage writes
OUTPUT_FILES = ("config.json", "run.json")


@dataclasses.dataclass
class PipelineConfig:
    force_stage: list[str] = setting(
        [], "stages to rerun even when current (and all after)", choices=list(ORDER)
    )
    state: Path | None = setting(
        None, "one state file for every stage (default: a key file beside each stage's output)"
    )


def made_path(output: Path) -> Path:
    """What a stage made: the folder when its output is named by a file inside it."""
    return output.parent if output.name in OUTPUT_FILES else output


class Keys:
    """Each stage output's key: in a file beside the output, or all in one `--state` file."""

    def __init__(self, state: Path | None):
        self.state = state
        self.shared = {}
        if state is not None:  # checked before any stage runs
            check_output(state, force=True, kind="file", suffix=".json", stage="pipeline")
            self.shared = self._read(state, "--state")
            if not all(isinstance(v, str) and k.split(":", 1)[0] in ORDER and ":" in k
                       for k, v in self.shared.items()):  # fmt: skip
                raise BadInput(
                    f"--state {state}: a JSON file, but no pipeline state (its keys are no "
                    "'STAGE:OUTPUT' entries); pass a new path or a state file the pipeline wrote"
                )

    @staticmethod
    def _read(path: Path, what: str) -> dict[str, Any]:
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            data = None
        if not isinstance(data, dict):
            raise BadInput(
                f"{what} {path}: not a pipeline state file (JSON object); remove it (the "
                "pipeline then reruns every stage)"
            )
        return data

    def where(self, output: Path) -> Path:
        if self.state is not None:
            return self.state
        made = made_path(output)
        return made.parent / f".{made.name}.pipeline.json"

    def get(self, name: str, output: Path | None) -> str | None:
        if output is None:
            return None
        if self.state is not None:
            return self.shared.get(f"{name}:{output}")
        f = self.where(output)
        record = self._read(f, "pipeline key")
        return record.get("key") if record.get("stage") == name else None

    def put(self, name: str, output: Path | None, key: str) -> None:
        if output is None:
            return
        if self.state is not None:
            self.shared[f"{name}:{output}"] = key
            write_text_atomic(self.state, json.dumps(self.shared, indent=2) + "\n")
        else:
            record = {"stage": name, "key": key, "output": str(made_path(output))}
            write_text_atomic(self.where(output), json.dumps(record, indent=2) + "\n")


def _stage(name: str):
    from vlmquant.stages import STAGES

    spec = next(s for s in STAGES if s.name == name)
    module = importlib.import_module(spec.module)
    return module, getattr(module, spec.settings)


def _output(name: str, cfg: Any) -> Path | None:
    return {
        "make-tiny": lambda: _make_tiny_out(cfg) / "config.json",
        "calib": lambda: cfg.out.with_suffix(".manifest.json"),
        "quantize": lambda: (cfg.out / "run.json") if cfg.out else None,
        "infer": lambda: cfg.out_dir / "run.json",
        "eval": lambda: cfg.out,
        "bench": lambda: cfg.out,
        "report": lambda: cfg.model_root / "reports",
    }[name]()


def _make_tiny_out(cfg: Any) -> Path:
    from vlmquant.tiny.make_tiny_stage import default_out

    return default_out(cfg)


def _external(name: str, cfg: Any) -> list[str]:
    """Fingerprints of inputs no earlier stage produced."""
    paths = []
    if name == "calib" and cfg.coco_annotations:
        paths.append(cfg.coco_annotations)
    if name == "quantize" and cfg.model and cfg.model.is_dir():
        paths += sorted(cfg.model.glob("*.safetensors")) + [cfg.model / "config.json"]
    out = []
    for p in paths:
        st = p.stat() if p.exists() else None
        out.append(f"{p}:{st.st_size}:{st.st_mtime_ns}" if st else f"{p}:missing")
    return out


def _settings(name: str, recipe: dict[str, Any]) -> Any:
    """A stage's settings from its recipe table (report's model root: quantize's by default)."""
    table = dict(recipe.get(name, {}))
    if name == "report" and "model_root" not in table:
        out = build(_stage("quantize")[1], recipe, {}, "quantize").out
        table["model_root"] = str(out.parent.parent)
    return build(_stage(name)[1], {name: table}, {}, name)


# settings that name what a stage writes, or its own bookkeeping, not an input
NOT_INPUTS = ("out", "out_dir", "model_root", "index", "state")


def _inputs(settings: Any) -> Iterator[tuple[str, Path]]:
    """(setting, path) for each path a stage's settings name as an input."""
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if field.name not in NOT_INPUTS and isinstance(value, Path):
            yield field.name, value


def _check_keeps_inputs(name: str, settings: Any) -> None:
    """A stage's output may not be or hold one of its inputs (a recipe whose [quantize] out is
    its model replaced the checkpoint; found only after the stages before it had run)."""
    output = _output(name, settings)
    if output is None:
        return
    made = made_path(output).resolve()
    for key, value in _inputs(settings):
        if value.resolve() == made or value.resolve().is_relative_to(made):
            raise BadInput(
                f"recipe [{name}] {key} = {str(value)!r}: the stage's output "
                f"{made_path(output)} is or holds it; write the output somewhere else"
            )


def _produces(made: Path, path: Path) -> bool:
    """Whether a stage that writes `made` makes `path` too: the path itself, something inside
    it, or a sibling file named after it (calib's .jsonl, manifest and _images beside its .txt)."""
    made, path = made.resolve(), path.resolve()
    if path == made or path.is_relative_to(made):
        return True
    return made.suffix != "" and path.parent == made.parent and path.name.startswith(made.stem)


def _check_inputs_exist(planned: dict[str, Any]) -> None:
    """Every input a stage names exists already or is made by a stage before it (an [eval]
    quantized that nothing makes was found only after the stages before it had run)."""
    made: list[Path] = []
    for name, settings in planned.items():
        for key, value in _inputs(settings):
            if not value.exists() and not any(_produces(m, value) for m in made):
                raise BadInput(
                    f"recipe [{name}] {key} = {str(value)!r}: no such file or folder, and "
                    "no stage before it makes it; fix the path or add the stage that makes it"
                )
        output = _output(name, settings)
        if output is not None:
            made.append(made_path(output))
        for key in ("out", "out_dir"):  # a file output's siblings (calib) count too
            if isinstance(getattr(settings, key, None), Path):
                made.append(getattr(settings, key))


def _stages(recipe: dict[str, Any], recipe_path: Path | None) -> list[str]:
    stages = [s for s in ORDER if s in recipe or (s == "report" and "quantize" in recipe)]
    if not stages:
        raise BadInput(
            f"--recipe {recipe_path}: names no stage; add tables like [calib], [quantize]"
        )
    return stages


def print_config(cfg: PipelineConfig, recipe: dict[str, Any], recipe_path: Path | None) -> None:
    """`--print-config`: every stage's merged settings as the pipeline would run them."""
    from vlmquant.core.config import to_toml

    print(to_toml("pipeline", cfg), end="")
    for name in _stages(recipe, recipe_path):
        print("\n" + to_toml(name, _settings(name, recipe)), end="")


def run(
    cfg: PipelineConfig, recipe: dict[str, Any] | None = None, recipe_path: Path | None = None
) -> None:
    """`vlmquant pipeline --recipe FILE` passes the recipe read from FILE."""
    if recipe is None:
        if recipe_path is None:
            raise BadInput("pipeline: pass --recipe FILE")
        recipe = load_recipe(recipe_path)
    stages = _stages(recipe, recipe_path)
    absent = [s for s in cfg.force_stage if s not in stages]
    if absent:
        raise BadInput(
            f"--force-stage {absent[0]}: the recipe runs no such stage (it runs "
            f"{', '.join(stages)}); add its table or drop the flag"
        )
    keys = Keys(cfg.state)
    planned = {name: _settings(name, recipe) for name in stages}
    for name, settings in planned.items():  # before any stage runs
        check_required(settings, name)
    for name, settings in planned.items():  # before any stage runs: no stage destroys an input
        _check_keeps_inputs(name, settings)
    _check_inputs_exist(planned)
    import torch

    previous, forced = "", False
    for name in stages:
        module, settings_cls = _stage(name)
        fields = {f.name for f in dataclasses.fields(settings_cls)}
        settings = planned[name]
        if name == "bench" and not torch.cuda.is_available():
            print("pipeline: bench skipped (no CUDA GPU)")
            continue
        key = hashlib.sha256(
            json.dumps(
                [to_jsonable(settings), _external(name, settings), previous], sort_keys=True
            ).encode()
        ).hexdigest()
        forced = forced or name in cfg.force_stage
        output = _output(name, settings)
        recorded = keys.get(name, output)
        if not forced and recorded == key and output is not None and output.exists():
            print(f"pipeline: {name} is current, skipped")
        else:
            if output is not None and output.exists() and recorded is None:
                raise BadInput(
                    f"pipeline: [{name}] would replace {made_path(output)}, "
                    f"which this pipeline did not make (no record in {keys.where(output)}); "
                    f"move it, change the recipe's output, or run `vlmquant {name} --force` "
                    "yourself"
                )
            if "force" in fields:
                settings = dataclasses.replace(settings, force=True)
            print(f"pipeline: running {name}")
            module.run(settings)
            forced = True  # everything downstream reruns
            keys.put(name, output, key)
        previous = key
