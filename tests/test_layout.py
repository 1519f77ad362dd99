"""The package's layering, read from the source: no import cycles between modules or between
vlmquant's sub-packages (function-level imports count too), and the neutral packages (core,
results, checkpoint, engine) import no stage."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
NEUTRAL = {
    "vlmquant.core": set(),
    "vlmquant.results": {"vlmquant.core"},
    "vlmquant.checkpoint": {"vlmquant.core", "vlmquant.results"},
    "vlmquant.engine": {
        "vlmquant.core",
        "vlmquant.checkpoint",
        "vlmquant.prompts",
        "vlmquant.results",
    },
}


def _modules() -> dict[str, Path]:
    mods = {}
    for p in SRC.rglob("*.py"):
        name = ".".join(p.with_suffix("").relative_to(SRC).parts)
        mods[name.removesuffix(".__init__")] = p
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the vlmquant modules it imports anywhere in its body."""
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vlmquant"):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if sub in mods else node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name in mods}
        graph[name] = found - {name}
    return graph


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle in `graph` as a path that returns to its start, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(u: str) -> list[str] | None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                return stack[stack.index(v) :] + [v]
            if v not in state and (found := visit(v)):
                return found
        stack.pop()
        state[u] = 2
        return None

    for u in sorted(graph):
        if u not in state and (found := visit(u)):
            return found
    return None


def test_no_import_cycles_between_modules_or_packages():
    graph = _imports(_modules())
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])
    packages: dict[str, set[str]] = {}
    for a, targets in graph.items():
        packages.setdefault(_package(a), set()).update(
            _package(b) for b in targets if _package(b) != _package(a)
        )
    assert _cycle(packages) is None, " -> ".join(_cycle(packages) or [])


def test_neutral_packages_import_no_stage():
    graph = _imports(_modules())
    for module, targets in graph.items():
        allowed = NEUTRAL.get(_package(module))
        if allowed is None:
            continue
        outside = {_package(t) for t in targets} - allowed - {_package(module)}
        assert not outside, f"{module} imports {sorted(outside)}"


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


# modules over the size limit, each one idea (and why it stays whole)
ONE_IDEA = {
    "eval/emulate.py": "one model of vLLM's FP8 arithmetic, per build (cuda and cpu)",
    "checkpoint/check_vllm.py": "check-vllm's rules, one after another in one check",
    "quantize/quantize_stage.py": "the quantize stage's one run, hf_ptq's steps in order",
}
LIMIT, HARD_LIMIT = 300, 400


def test_modules_stay_small():
    sizes = {
        str(p.relative_to(SRC / "vlmquant")): len(p.read_text().splitlines())
        for p in (SRC / "vlmquant").rglob("*.py")
    }
    over = {m: n for m, n in sizes.items() if n > LIMIT and m not in ONE_IDEA}
    assert not over, f"modules over {LIMIT} lines: {over}"
    assert all(sizes[m] <= HARD_LIMIT for m in ONE_IDEA), {m: sizes[m] for m in ONE_IDEA}
