"""Outputs appear whole or not at all: write into a temporary sibling, then rename into place."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlmquant.core.errors import BadInput

# the longest addition the tool makes to an output's name (".NAME.tmp-XXXXXXXX", ".NAME.partial",
# ".NAME.pipeline.json", ".STEM-work")
NAME_EXTRA = 24


def check_output(
    path: Path, force: bool, kind: str = "folder", suffix: str = "", stage: str = ""
) -> None:
    """Refuse to overwrite an existing output unless --force, an output of the other `kind`
    (a file where a folder is written, or the reverse: --force or not, that is someone else's),
    a file output without its `suffix` (`--out results/` names a folder, not a JSON file), and
    an output whose folder cannot be written (before any work is done). With `stage` (the
    stage that writes it), --force replaces only that stage's own earlier output: not another
    stage's (an export given to infer's --out-dir), not a checkpoint no stage made, and no
    output lands inside a checkpoint folder."""
    if any(ord(c) < 32 or ord(c) == 127 for c in path.name):
        raise BadInput(
            f"output {str(path)!r}: its name holds a control character (a newline or tab); "
            "pass a plain name"
        )
    name_max = 255  # NAME_MAX of Linux file systems; the tool's own files add up to NAME_EXTRA
    if len(os.fsencode(path.name)) + NAME_EXTRA > name_max:
        raise BadInput(
            f"output {path.name[:40]}...: a name of {len(os.fsencode(path.name))} bytes; the "
            f"file system allows {name_max}, and the tool adds up to {NAME_EXTRA} for its "
            "temporary and lock files: pass a shorter name"
        )
    if suffix and path.suffix != suffix:
        # an existing folder is where the file should go; any other name lacks the suffix
        example = path / ("result" + suffix) if path.is_dir() else path.with_suffix(suffix)
        raise BadInput(f"output {path}: this stage writes a {suffix} file; pass a path ending in "
                       f"{suffix}, e.g. {example}")  # fmt: skip
    if path.exists() and path.is_dir() != (kind == "folder"):
        what = "a folder" if path.is_dir() else "a file"
        raise BadInput(
            f"output {path}: is {what}, but this stage writes a {kind} there; pass another path"
        )
    if path.exists() and not force:
        raise BadInput(
            f"output {path} already exists; pass --force to replace it or choose another path"
        )
    if stage:
        holder = next((p for p in path.absolute().parents if is_checkpoint(p)), None)
        if holder is not None:
            raise BadInput(
                f"output {path}: sits inside the checkpoint folder {holder}; write it somewhere "
                "else"
            )
        owner = made_by(path) if path.exists() else None
        if owner is not None and owner != stage:
            what = f"a `vlmquant {owner}` output" if owner else "a checkpoint no stage made"
            raise BadInput(
                f"output {path}: is {what}; --force replaces only an earlier `vlmquant {stage}` "
                "output: pass another path (or remove it yourself)"
            )
    writable_folder(path.parent)


def is_checkpoint(folder: Path) -> bool:
    """A model folder: its config.json beside safetensors weights."""
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def made_by(path: Path) -> str | None:
    """Which stage made an existing output, when something says: the stage in the run record
    a stage leaves (a folder's run.json, a JSON result's "run"); "" for a model folder without
    one (a checkpoint no vlmquant stage made); None when nothing says."""
    record = path / "run.json" if path.is_dir() else path
    if record.is_file() and record.suffix == ".json" and record.stat().st_size < 64 << 20:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(record.read_text(encoding="utf-8"))
            run = data.get("run", data) if isinstance(data, dict) else None
            stage = run.get("stage") if isinstance(run, dict) else None
            if isinstance(stage, str):
                return stage
    return "" if path.is_dir() and is_checkpoint(path) else None


def writable_folder(folder: Path) -> None:
    """`folder` exists and is writable, or can be made: else bad input naming it."""
    probe = folder.absolute()
    while not probe.exists():
        probe = probe.parent
    try:  # a real write: permission bits say nothing for root, or on /proc and read-only mounts
        if not probe.is_dir():
            raise OSError
        fd, name = tempfile.mkstemp(prefix=".vlmquant-probe-", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError:
        raise BadInput(
            f"{folder}: cannot be written (check {probe}); pass another output path"
        ) from None


def check_apart(out: Path, inputs: dict[str, Path | None], may_sit_inside: tuple = ()) -> None:
    """An output may not be or hold an input (replacing it would destroy the input), nor sit
    inside one (a checkpoint folder with an export in it), except inputs in `may_sit_inside`
    (a folder of images)."""
    o = out.resolve()
    for flag, path in inputs.items():
        if path is None:
            continue
        i = path.resolve()
        inside = o.is_relative_to(i) and flag not in may_sit_inside
        if o == i or inside or i.is_relative_to(o):
            raise BadInput(
                f"output {out}: is, holds or sits inside {flag} {path}; write the output "
                "somewhere else"
            )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


@contextlib.contextmanager
def output_lock(final: Path) -> Iterator[None]:
    """`.<name>.lock` beside `final`, holding our pid: a second run on the same output fails
    fast instead of deleting the first one's temporary folder. A lock whose process is gone
    (killed) is taken over."""
    final.parent.mkdir(parents=True, exist_ok=True)
    lock = final.with_name(f".{final.name}.lock")
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _pid_alive(pid):
                raise BadInput(
                    f"output {final}: another run (pid {pid}) is writing it; wait for it to "
                    "finish or choose another output path"
                ) from None
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        break
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


@contextlib.contextmanager
def atomic_dir(final: Path, force: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside `final`; on success it replaces `final`.

    On any error the temporary folder is removed and `final` is untouched. A process killed
    midway leaves only a `.<name>.tmp-*` folder, which the next run clears; a run on an output
    another live run is writing is bad input (see `output_lock`).
    """
    with output_lock(final):
        check_output(final, force)
        for stale in final.parent.glob(f".{final.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        with _replacing(final) as tmp:
            yield tmp


@contextlib.contextmanager
def _replacing(final: Path) -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
        readable_like_the_rest(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old) if final.is_dir() else final.rename(old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
    else:
        os.replace(tmp, final)


def empty_folder(folder: Path) -> None:
    """Remove what `folder` holds (an atomic_dir's folder before its contents are made again)."""
    for p in folder.iterdir():
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def ordinary_file_mode() -> int:
    """The mode the umask gives a newly created file (0644 under the usual 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def readable_like_the_rest(folder: Path) -> None:
    """Files that a library wrote private (safetensors' writers use 0600 temporaries) get the
    mode the umask gives any other file, so a server running as another user can read them."""
    mode = ordinary_file_mode()
    for f in folder.rglob("*"):
        if f.is_file() and not f.is_symlink() and f.stat().st_mode & 0o777 == 0o600:
            f.chmod(mode)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a file through a temporary sibling and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, ordinary_file_mode())  # mkstemp makes it private; this is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False) + "\n"
