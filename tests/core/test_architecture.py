"""The package's import structure: no import circles, no private names used across modules.

Every ``import`` of an ``irene`` module counts: at module level, inside a function (a lazy
import is still a dependency) and under ``if TYPE_CHECKING:`` (a type is a dependency too). A
circle is a strongly connected component of that graph; a private name is one with a leading
underscore (``from irene.x import _helper``) imported by another module.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from support.paths import ROOT

PACKAGE = ROOT / "irene"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """(module -> the irene modules it imports, [(importer, module, private name)])."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in paths}
    private: list[tuple[str, str, str]] = []
    for name, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                if base.split(".")[0] != "irene":
                    continue
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    target = target if target in paths else base
                    if target in paths and target != name:
                        graph[name].add(target)
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        private.append((name, base, alias.name))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in paths and alias.name != name:
                        graph[name].add(alias.name)
    return graph, private


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_checker_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(graph) == [["a", "b", "c"]]


def test_no_import_circles():
    graph, _ = import_graph()
    assert len(graph) > 50  # the whole package was read
    assert circles(graph) == []


def test_no_private_names_imported_across_modules():
    _, private = import_graph()
    assert private == []


#: libraries that cost a command's start-up tenths of a second to seconds each
HEAVY_LIBRARIES = ("numpy", "torch", "transformers", "matplotlib", "fastapi", "scipy")


def test_building_the_parser_imports_no_heavy_library():
    """``irene --help`` (and every command before it runs) builds the whole parser: that must
    not load the numerical, plotting or serving libraries (checked in a fresh interpreter)."""
    code = ("import sys, irene.cli\n"
            "parser = irene.cli.build_parser()\n"
            "assert parser.parse_args(['crossvalidate', 'd', 'o']).command == 'crossvalidate'\n"
            f"heavy = {HEAVY_LIBRARIES!r}\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]"


def test_a_command_still_loads_what_it_needs():
    """The check above would pass vacuously if sys.modules were never filled: running the
    lazily imported names of irene and irene.measure does load numpy."""
    code = ("import sys, irene, irene.measure\n"
            "assert irene.Tree.__module__ == 'irene.tree'\n"
            "assert irene.measure.Protocol().runs >= 1\n"
            "import irene.model\n"
            "print('numpy' in sys.modules)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=ROOT, check=True)
    assert done.stdout.strip() == "True"
