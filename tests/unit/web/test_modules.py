"""The claim page's ES modules stay small and acyclic: every import resolves, no module is over
MAX_LINES, no import cycle, and no module imports the entry module (extensions use the shared modules)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[3] / "web"
ENTRY = "app.js"
MAX_LINES = 400

# Static `import … from './x.js'`, side-effect `import './x.js'`, `export … from`, and dynamic import().
IMPORT = re.compile(
    r"""(?:^|[;\s])(?:import|export)\s[^'";]*?\bfrom\s*['"]([^'"]+)['"]"""
    r"""|(?:^|[;\s])import\s*['"]([^'"]+)['"]"""
    r"""|\bimport\(\s*['"]([^'"]+)['"]\s*\)""",
    re.MULTILINE,
)
COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.DOTALL)


def imports_of(source: str) -> list[str]:
    code = COMMENT.sub("", source)
    return [next(g for g in m.groups() if g) for m in IMPORT.finditer(code)]


def module_graph(web: Path) -> dict[str, list[str]]:
    """module file name -> the module file names it imports (relative imports only: the page has no others)."""
    graph: dict[str, list[str]] = {}
    for path in sorted(web.glob("*.js")):
        targets = []
        for spec in imports_of(path.read_text(encoding="utf-8")):
            if not spec.startswith("./"):
                raise AssertionError(f"{path.name} imports {spec!r}: the page has no build step, only ./x.js")
            targets.append((path.parent / spec).resolve().relative_to(web.resolve()).as_posix())
        graph[path.name] = targets
    return graph


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """One import cycle as a path (first module repeated at the end), or None."""
    done: set[str] = set()
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in stack:
            return [*stack[stack.index(node) :], node]
        if node in done:
            return None
        stack.append(node)
        for target in graph.get(node, []):
            cycle = visit(target)
            if cycle:
                return cycle
        stack.pop()
        done.add(node)
        return None

    for start in graph:
        cycle = visit(start)
        if cycle:
            return cycle
    return None


def test_every_import_resolves_to_a_module_of_the_page() -> None:
    graph = module_graph(WEB)
    assert ENTRY in graph
    missing = {f"{m} -> {t}" for m, targets in graph.items() for t in targets if t not in graph}
    assert not missing, f"imports of files that do not exist: {sorted(missing)}"


def test_modules_are_small() -> None:
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in WEB.glob("*.js")}
    assert len(sizes) > 1
    too_big = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not too_big, f"modules over {MAX_LINES} lines (split them by concern): {too_big}"


def test_no_import_cycles() -> None:
    cycle = find_cycle(module_graph(WEB))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_imports_the_entry_module() -> None:
    importers = sorted(m for m, targets in module_graph(WEB).items() if ENTRY in targets)
    assert not importers, f"{importers} import {ENTRY}; import the module that owns the function instead"


def test_index_loads_only_modules_that_exist() -> None:
    html = (WEB / "index.html").read_text(encoding="utf-8")
    scripts = re.findall(r'<script\s+type="module"\s+src="([^"]+)"', html)
    assert ENTRY in scripts
    assert all((WEB / s).is_file() for s in scripts), scripts


# The checks themselves: each must catch what it is there for.
def test_the_parser_sees_every_import_form() -> None:
    source = """
        import { a } from './a.js';
        import * as b from "./b.js";
        import './c.js';
        export { d } from './d.js';
        const e = await import('./e.js');
        import {
          f,
          g,
        } from './f.js';
        // import { x } from './commented.js';
        /* import './also-commented.js'; */
        const text = 'important';
    """
    assert sorted(imports_of(source)) == ["./a.js", "./b.js", "./c.js", "./d.js", "./e.js", "./f.js"]


def test_a_cycle_is_found(tmp_path: Path) -> None:
    (tmp_path / "app.js").write_text("import { x } from './x.js';\n")
    (tmp_path / "x.js").write_text("import { y } from './y.js';\nexport const x = 1;\n")
    (tmp_path / "y.js").write_text("import { x } from './x.js';\nexport const y = 2;\n")
    assert find_cycle(module_graph(tmp_path)) == ["x.js", "y.js", "x.js"]


def test_an_acyclic_graph_passes(tmp_path: Path) -> None:
    (tmp_path / "app.js").write_text("import './x.js';\nimport './y.js';\n")
    (tmp_path / "x.js").write_text("import './y.js';\n")
    (tmp_path / "y.js").write_text("export const y = 1;\n")
    assert find_cycle(module_graph(tmp_path)) is None


def test_a_bare_import_is_refused(tmp_path: Path) -> None:
    (tmp_path / "app.js").write_text("import { html } from 'lit';\n")
    with pytest.raises(AssertionError, match="no build step"):
        module_graph(tmp_path)
