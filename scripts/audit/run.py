"""A hostile-input audit of the vlmquant CLI, as a careless user would drive it.

Each case (scripts/audit/cases_*.py) is a documented function of (fx, d) that prepares its own
folder from the shared fixtures (the tiny model, its FP8 export, a demo calibration set, a tiny
sensitivity file) and returns the command to run with what it promises: exit 2 with one line
and no traceback, nothing at the output path and every input unchanged; or exit 0 and a check
of the output. Every case runs as a separate `python -m vlmquant` process; the verdicts go to a
JSON file and a page rendered from it.

    usage: python scripts/audit/run.py CASES_MODULE OUT.json [--work DIR] [--only NAME ...]
    e.g.   python scripts/audit/run.py cases_w docs/audit/round-w.json
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import inspect
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# the subcommands a message may tell a user to run (read from the source: no import)
STAGE_NAMES = set(
    re.findall(r'Stage\(\s*"([a-z-]+)"', (ROOT / "src/vlmquant/stages.py").read_text())
)


@dataclass
class Case:
    argv: list
    expect: int = 2
    out: Path | None = None  # must not appear (exit 2) / is checked (exit 0)
    inputs: list = field(default_factory=list)  # must be byte-identical afterwards
    check: Callable[[], str | None] | None = None  # exit 0: None when the output is right
    stdin: str | None = None
    timeout: int = 600


def digest(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_symlink():
        h.update(os.readlink(path).encode())
    elif path.is_file():
        h.update(path.read_bytes())
    elif path.is_dir():
        for f in sorted(path.rglob("*")):
            if f.is_file() and not f.is_symlink():
                h.update(f.relative_to(path).as_posix().encode())
                h.update(f.read_bytes())
    else:
        return "absent"
    return h.hexdigest()


def vq(*args) -> list:
    return [sys.executable, "-m", "vlmquant", *[str(a) for a in args]]


def build_fixtures(work: Path) -> dict:
    """The tiny model, its FP8 export, a 64-caption demo set with pictures, a sensitivity file."""
    work.mkdir(parents=True, exist_ok=True)
    fx = {
        "tiny": work / "tiny",
        "calib": work / "calib" / "demo_captions.txt",
        "export": work / "export",
        "sens": work / "sens.json",
    }
    steps = [
        ("tiny", vq("make-tiny", "--out", fx["tiny"], "--seed", 0)),
        ("calib", vq("calib", "--demo", "--num-samples", 64, "--out", fx["calib"])),
        (
            "export",
            vq("quantize", "--model", fx["tiny"], "--calib", fx["calib"])
            + ["--calib-size", "16", "--out", str(fx["export"])],
        ),
        (
            "sens",
            vq("sensitivity", "--base", fx["tiny"], "--calib", fx["calib"])
            + ["--calib-size", "16", "--max-samples", "4", "--out", str(fx["sens"])],
        ),
    ]
    for key, cmd in steps:
        if not fx[key].exists():
            subprocess.run(cmd, check=True, env=run_env())
    fx["images"] = fx["calib"].with_name("demo_captions_images")
    return fx


def run_env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env["PYTHONPATH"] = f"{ROOT / 'src'}{os.pathsep}{env.get('PYTHONPATH', '')}".rstrip(os.pathsep)
    return env


def judge(case: Case, rc: int, err: str, before: dict, out_before: str) -> list:
    """What broke the promise (empty when the case met it)."""
    off = []
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if rc != case.expect:
        off.append(f"exit {rc}, expected {case.expect}")
    if "Traceback" in err:
        off.append("traceback on stderr")
    changed = [str(p) for p, d in before.items() if digest(Path(p)) != d]
    if changed:
        off.append(f"input changed: {', '.join(changed)}")
    if case.expect == 2:
        if len(lines) != 1:
            off.append(f"{len(lines)} lines on stderr, expected one")
        for name in re.findall(r"`vlmquant ([a-z][a-z-]*)", err):  # the fix names a command
            if name not in STAGE_NAMES:
                off.append(f"the fix names `vlmquant {name}`, no such subcommand")
        if case.out is not None and digest(case.out) != out_before:
            off.append(f"output path written: {case.out}")
    elif rc == 0 and case.check is not None:
        wrong = case.check()
        if wrong:
            off.append(f"wrong output: {wrong}")
    return off


def run_case(name: str, make: Callable, fx: dict, root: Path) -> dict:
    d = root / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    case = make(fx, d)
    watched = [*case.inputs, *(fx[k] for k in ("tiny", "export", "calib"))]
    before = {str(p): digest(Path(p)) for p in watched}
    out_before = digest(case.out) if case.out is not None else "absent"
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [str(a) for a in case.argv],
            cwd=d,
            env=run_env(),
            input=case.stdin,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=case.timeout,
        )
        rc, err = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as e:
        rc, err = -1, f"timed out after {case.timeout} s {e.stderr or ''}"
    off = judge(case, rc, err, before, out_before)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return {
        "case": name,
        "doc": (make.__doc__ or "").strip(),
        "argv": [
            str(a).replace(str(root), "CASE").replace(str(fx["tiny"].parent), "FIX")
            for a in case.argv[3:]
        ],
        "expect": case.expect,
        "exit": rc,
        "stderr_tail": lines[-3:],
        "seconds": round(time.monotonic() - start, 1),
        "ok": not off,
        "off": off,
    }


def render(result: dict) -> str:
    rows = result["cases"]
    bad = [r for r in rows if not r["ok"]]
    out = [
        f"# Hostile-input audit, round {result['round']}",
        "",
        f"- {len(rows)} cases, {len(bad)} off-promise ({100 * len(bad) / max(len(rows), 1):.1f}%);"
        f" code {result['code']}; {result['python']}",
        f"- command: `{result['command']}`",
        *([f"- note: {result['note']}"] if result.get("note") else []),
        "- promise: bad input is exit 2 with one line on stderr, no traceback, nothing at the"
        " output path and every input unchanged; a good input (expected exit 0) gives the right"
        " output",
        "",
        "| case | what | expected | exit | verdict | last line on stderr |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        verdict = "ok" if r["ok"] else "OFF: " + "; ".join(r["off"])
        last = (r["stderr_tail"][-1] if r["stderr_tail"] else "").replace("|", "\\|")[:160]
        doc = r["doc"].replace("|", "\\|")
        out.append(f"| {r['case']} | {doc} | {r['expect']} | {r['exit']} | {verdict} | {last} |")
    return "\n".join(out) + "\n"


def code_version() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cases_of(mod) -> list:
    """A cases module's cases, in the order it defines them: its documented functions of
    (fx, d)."""
    return [(name, fn) for name, fn in vars(mod).items()
            if inspect.isfunction(fn) and fn.__module__ == mod.__name__ and fn.__doc__
            and not name.startswith("_")
            and list(inspect.signature(fn).parameters) == ["fx", "d"]]  # fmt: skip


def rerender(folder: Path) -> list[str]:
    """Pages in `folder` that differ from their rendering from the JSON beside them."""
    return [j.name for j in sorted(folder.glob("*.json"))
            if j.with_suffix(".md").read_text() != render(json.loads(j.read_text()))]  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", help="a module in scripts/audit/, e.g. cases_v")
    ap.add_argument("out", type=Path, help="the verdicts, a .json path (a .md page beside it)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/vlmquant-audit"))
    ap.add_argument("--only", nargs="*", default=None, help="run only these cases")
    ap.add_argument("--note", default="", help="a line for the page: what this run is")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    mod = importlib.import_module(args.cases)
    fx = build_fixtures(args.work / "fixtures")
    cases = [(n, f) for n, f in cases_of(mod) if args.only is None or n in args.only]
    rows = []
    for i, (name, make) in enumerate(cases, 1):
        row = run_case(name, make, fx, args.work / "cases")
        rows.append(row)
        print(
            f"[{i}/{len(cases)}] {name}: {'ok' if row['ok'] else 'OFF ' + '; '.join(row['off'])}",
            flush=True,
        )
    result = {
        "round": getattr(mod, "ROUND", args.cases),
        "command": "python scripts/audit/run.py " + shlex.join(sys.argv[1:]),
        "code": code_version(),
        "python": f"Python {platform.python_version()} on {platform.platform()}",
        "cases": rows,
        "off_promise": sum(not r["ok"] for r in rows),
        "note": args.note,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(render(result))
    print(f"{result['off_promise']} of {len(rows)} off-promise -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
