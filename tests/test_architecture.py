"""The module map's one rule that code can check: imports among `src/vocoder` modules run
one way. Lazy imports inside functions count too: a loop hidden in a function still ties
the modules together and breaks when one is imported first."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "vocoder"


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module name -> the package's modules it imports, anywhere in its file."""
    modules = {p.stem for p in package.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "vocoder":
                parts = node.module.split(".")
                found |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("vocoder.")}
        graph[path.stem] = (found & modules) - {path.stem}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_the_finder_sees_a_loop_through_a_lazy_import(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from vocoder.b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from vocoder import c\n")
    (tmp_path / "c.py").write_text("import vocoder.a\n")
    (tmp_path / "d.py").write_text("from vocoder import a, numpy_is_not_a_module\n")
    graph = import_graph(tmp_path)
    assert graph == {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    (tmp_path / "c.py").write_text("x = 1\n")
    assert find_cycle(import_graph(tmp_path)) is None


def test_no_module_of_the_package_imports_itself_back() -> None:
    graph = import_graph(PACKAGE)
    assert {"cli", "model", "sampler", "checkpoint", "subscale"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import loop: " + " -> ".join(cycle or [])
