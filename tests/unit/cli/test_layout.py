"""The CLI and the simulator import in one direction: no cycles, and nothing shipped reaches `bench`."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def module_graph(*packages: str) -> dict[str, set[str]]:
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for package in packages
        for p in (ROOT / package).rglob("*.py")
    }
    return {name: imports(path) & set(modules) - {name} for name, path in modules.items()}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target] if target in path else [node, target]
            if target not in state and (found := visit(target, [*path, target])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_cli_and_fleetsim_have_no_import_cycles():
    graph = module_graph("cli", "fleetsim")
    assert "cli.main" in graph and "fleetsim.study" in graph
    assert cycle(graph) is None, " -> ".join(cycle(graph) or [])
    # Nothing imports the entry point: what commands share is in cli.context.
    assert not [name for name, targets in graph.items() if "cli.main" in targets]


def test_the_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_nothing_shipped_imports_bench_or_tests():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    assert "bench" not in shipped and "fleetsim" in shipped
    offenders = [
        str(path.relative_to(ROOT))
        for package in shipped
        for path in (ROOT / package).rglob("*.py")
        if any(name.split(".")[0] in ("bench", "tests") for name in imports(path))
    ]
    assert offenders == []
