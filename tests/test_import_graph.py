"""alexbench's modules import each other without a cycle, counting imports inside functions too
(a function-level import hides a cycle from Python's import machinery, not from the design)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"api": "alexbench", "spec": "alexbench.spec", "backends": "alexbench.backends",
            "harness": "alexbench.harness"}


def module_sources() -> dict[str, tuple[str, bool]]:
    """Module name -> (source, is a package's __init__) for every module the project installs."""
    found = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            name = ".".join([package, *(parts[:-1] if is_package else parts)])
            found[name] = (path.read_text(encoding="utf-8"), is_package)
    return found


def import_edges(name: str, source: str, is_package: bool, modules: set[str]) -> set[str]:
    """The project modules ``name`` imports anywhere in its body."""
    edges = set()
    here = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            # "from pkg import mod" imports the module pkg.mod; "from mod import name" the module mod
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        edges.update(t for t in targets if t in modules and t != name)
    return edges


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def project_graph(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    return {name: import_edges(name, source, is_package, set(sources))
            for name, (source, is_package) in sources.items()}


def test_no_import_cycle_in_the_project():
    assert find_cycles(project_graph(module_sources())) == []


def test_a_planted_function_level_cycle_is_found():
    sources = module_sources()
    source, is_package = sources["alexbench.spec.ops"]
    sources["alexbench.spec.ops"] = (source + "\n\ndef planted():\n    from ..harness.compare import run\n",
                                     is_package)
    cycles = find_cycles(project_graph(sources))
    assert any({"alexbench.spec.ops", "alexbench.harness.compare.run"} <= set(c) for c in cycles), cycles


def test_relative_imports_resolve_from_a_package_and_from_a_module():
    modules = {"alexbench.a", "alexbench.a.b", "alexbench.a.c", "alexbench.d"}
    assert import_edges("alexbench.a", "from . import b\nfrom .c import x\n", True, modules) == {
        "alexbench.a.b", "alexbench.a.c"}
    assert import_edges("alexbench.a.b", "from ..d import y\nfrom . import c\n", False, modules) == {
        "alexbench.d", "alexbench.a.c"}
