"""No import cycles among the project's own modules (ltaug/, trainer/, cli/, with their subpackages).

The graph has an edge A -> B when module A imports module B anywhere in its text (module
level or inside a function; absolute or relative):

* ``import p.q`` -> ``p.q``;
* ``from p import q`` -> ``p.q`` when that is a module, else ``p`` (``q`` is a name defined or
  re-exported in ``p``, for a package its ``__init__``); ``from .q import name`` -> ``q``.

Importing ``p.q`` also runs ``p/__init__.py`` first, but that is not an edge: a package whose
``__init__`` re-exports its submodules' names, while the submodules import each other and not
the package, has no cycle. A cycle is a strongly connected component of more than one module.
"""
from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ltaug", "trainer", "cli")
INSTALLED = {"ltaug": "ltaug", "trainer": "ltaug.trainer", "cli": "ltaug.cli"}  # folder -> its name (pyproject)


def module_names(root: Path, packages) -> dict[str, Path]:
    """Dotted module name (as installed: the folder trainer/ is ltaug.trainer) -> file, for every
    .py file under each package folder (recursively)."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root / package).with_suffix("").parts
            parts = (*INSTALLED.get(package, package).split("."), *parts)
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def in_package(module: str, package: str) -> bool:
    """Whether ``module`` belongs to the folder ``package`` (ltaug/ holds neither ltaug.cli nor ltaug.trainer)."""
    name = INSTALLED[package]
    if not (module == name or module.startswith(name + ".")):
        return False
    return package != "ltaug" or not any(in_package(module, other) for other in ("cli", "trainer"))


def _known(name: str, modules) -> str | None:
    """``name`` or its longest dotted prefix that is one of ``modules``."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in modules:
            return ".".join(parts[:k])
    return None


def imports_of(module: str, path: Path, modules) -> set[str]:
    """The project modules that ``module`` (the file ``path``) imports."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(_known(alias.name, modules) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules
                          else _known(source, modules))
    found.discard(None)
    return found


def import_graph(root: Path = ROOT, packages=PACKAGES) -> dict[str, set[str]]:
    modules = module_names(root, packages)
    return {m: imports_of(m, path, modules) for m, path in modules.items()}


def _reachable(graph, start: str) -> set[str]:
    """The modules reachable from ``start`` by one edge or more."""
    seen, todo = set(), list(graph[start])
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += graph[m]
    return seen


def cycles(graph) -> list[list[str]]:
    """One shortest cycle (its modules in import order, the first repeated at the end) per strongly
    connected component of more than one module."""
    reach = {m: _reachable(graph, m) for m in graph}
    components = {frozenset(n for n in reach[m] if m in reach[n]) for m in graph if m in reach[m]}
    out = []
    for comp in sorted((c for c in components if len(c) > 1), key=min):
        start = min(comp)
        came_from, todo = {}, deque([start])
        while start not in came_from:  # breadth-first inside the component, back to start
            m = todo.popleft()
            for n in sorted(graph[m] & comp):
                if n not in came_from:
                    came_from[n] = m
                    todo.append(n)
        path = [start]
        while path[-1] != start or len(path) == 1:
            path.append(came_from[path[-1]])
        out.append(path[::-1])
    return out


@pytest.mark.parametrize("package", ["ltaug", "trainer", "cli"])
def test_no_import_cycles(package):
    found = [c for c in cycles(import_graph()) if any(in_package(m, package) for m in c)]
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_graph_rules(tmp_path):
    """The edge rules on a small package: re-exports in __init__ are no cycle, names taken from
    the package __init__ are."""
    files = {
        "p/__init__.py": "from .a import A\nfrom .sub import B\n",
        "p/a.py": "from . import b\n\ndef f():\n    from .sub.c import C\n",
        "p/b.py": "import p.sub\n",
        "p/sub/__init__.py": "from .c import B\n",
        "p/sub/c.py": "from .. import a\nfrom ..a import f\nB = 1\n",
        "p/d.py": "from p import A\n",
        "q/__init__.py": "",
        "q/e.py": "from p.sub import c, B\nimport os\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path, ("p", "q"))
    assert graph == {"p": {"p.a", "p.sub"}, "p.a": {"p.b", "p.sub.c"}, "p.b": {"p.sub"}, "p.d": {"p"},
                     "p.sub": {"p.sub.c"}, "p.sub.c": {"p.a"}, "q": set(), "q.e": {"p.sub.c", "p.sub"}}
    assert cycles(graph) == [["p.a", "p.sub.c", "p.a"]]
    (tmp_path / "p/a.py").write_text("from p import A\n")  # a name of p's __init__, which imports p.a
    assert cycles(import_graph(tmp_path, ("p", "q"))) == [["p", "p.a", "p"]]
