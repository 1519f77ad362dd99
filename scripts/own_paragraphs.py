"""Write "your own .txt" for the recipe comparison's calibration-text variant: prose paragraphs
(the first paragraph of Python standard-library docstrings of modules, classes and functions, at
least 15 words, each once), one a line. None is in the eval set (paragraphs, demo captions).

    python scripts/own_paragraphs.py OUT.txt [N]   (N: how many, default 512)
"""

import contextlib
import importlib
import inspect
import io
import pkgutil
import sys
import sysconfig
import warnings
from pathlib import Path

MIN_WORDS = 15


def paragraphs(n: int) -> list[str]:
    stdlib = sysconfig.get_paths()["stdlib"]
    warnings.simplefilter("ignore")
    seen: set[str] = set()
    out: list[str] = []
    skip = ("antigravity", "this", "idlelib", "turtledemo", "test", "lib2to3", "tkinter")
    found = pkgutil.walk_packages([stdlib], onerror=lambda name: None)
    for m in sorted(found, key=lambda m: m.name):
        parts = m.name.split(".")
        if parts[0] in skip or any(p.startswith("_") or p.startswith("test") for p in parts[1:]):
            continue
        try:
            mod = importlib.import_module(m.name)
        except Exception:  # a module this platform cannot import
            continue
        members = [v for _, v in sorted(vars(mod).items())
                   if (inspect.isclass(v) or inspect.isfunction(v))
                   and getattr(v, "__module__", None) == m.name]  # fmt: skip
        methods = [f for c in members if inspect.isclass(c)
                   for _, f in sorted(vars(c).items()) if inspect.isfunction(f)]  # fmt: skip
        for obj in (mod, *members, *methods):
            doc = " ".join((inspect.getdoc(obj) or "").split("\n\n")[0].split())
            if len(doc.split()) >= MIN_WORDS and doc not in seen:
                seen.add(doc)
                out.append(doc)
    return out[:n]


if __name__ == "__main__":
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 512
    with contextlib.redirect_stdout(io.StringIO()):  # a few modules print when imported
        texts = paragraphs(n)
    if len(texts) < n:
        sys.exit(f"only {len(texts)} paragraphs found, {n} asked")
    Path(sys.argv[1]).write_text("".join(t + "\n" for t in texts), encoding="utf-8")
