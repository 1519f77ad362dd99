"""A bench run's work folder: every engine start's result is kept there until the run is
complete, so a run cut short resumes (--resume) from what it finished, with the same settings;
and the partial result file written after every engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlmquant.core.errors import BadInput


def partial_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.partial")


# settings that do not change what a run measures: a resumed run may differ in them
NOT_MEASURED = ("force", "resume", "timeout")


def start_work(cfg: Any, work: Path):
    """Prepare the run's work folder and return `reuse(folder, spec)`: a finished engine
    start's result when resuming a run of the same settings, else None. A fresh run starts
    from an empty work folder; `--resume` needs the cut run's, with the same settings."""
    import shutil

    from vlmquant.core.config import to_jsonable
    from vlmquant.engine.worker import complete_json

    settings = {k: v for k, v in to_jsonable(cfg).items() if k not in NOT_MEASURED}
    record = work / "settings.json"
    if not cfg.resume:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        record.write_text(json.dumps(settings, indent=2))
        return lambda where, spec: None
    if not complete_json(record):
        raise BadInput(
            f"--resume: no run of --out {cfg.out} was cut short here ({work} is missing); "
            "drop --resume"
        )
    before = json.loads(record.read_text())
    differ = sorted(k for k in settings.keys() | before.keys() if settings.get(k) != before.get(k))
    if differ:
        raise BadInput(
            f"--resume: the cut run of --out {cfg.out} had other settings ({', '.join(differ)}); "
            "give the same ones, or drop --resume"
        )

    def reuse(where: Path, spec: dict[str, Any]) -> dict[str, Any] | None:
        result, asked = where / "engine_result.json", where / "engine_spec.json"
        if not (complete_json(result) and complete_json(asked)):
            return None
        if json.loads(asked.read_text()) != json.loads(json.dumps(spec)):
            return None
        return json.loads(result.read_text())

    return reuse


def finish(out: Path, work: Path) -> None:
    import shutil

    partial_path(out).unlink(missing_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    print(f"bench: -> {out}")
