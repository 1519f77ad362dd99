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
