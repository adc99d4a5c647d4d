"""ltaug's packages follow the data's flow: each package's ``__init__`` docstring ends with
"May import: ..." naming the packages and top-level modules (``errors``, ``params``, ``pool``) its modules
may import, and the code keeps to it (``from ltaug import __version__`` aside)."""
from __future__ import annotations

import ast
import re

from conftest import ROOT

LTAUG = ROOT / "ltaug"


def packages() -> list[str]:
    return sorted(p.parent.name for p in LTAUG.glob("*/__init__.py"))


def allowed(package: str) -> set[str]:
    doc = ast.get_docstring(ast.parse((LTAUG / package / "__init__.py").read_text())) or ""
    match = re.search(r"May import:([^.]*)\.", doc.replace("\n", " "))
    assert match, f"ltaug/{package}/__init__.py: the docstring does not say which packages it may import"
    words = re.sub(r"\([^)]*\)", "", match.group(1))
    return {w.strip() for w in words.split(",")} - {""}


def imported_packages(package: str) -> dict[str, set[str]]:
    """For each module of the package: the ltaug packages (or top-level modules) it imports."""
    out = {}
    for path in sorted((LTAUG / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = ["ltaug", package] if node.level == 1 else ["ltaug"]
                names.add(".".join(base + ([node.module] if node.module else [])))
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ltaug"):
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names if a.name.startswith("ltaug"))
        out[str(path.relative_to(ROOT))] = {n.split(".")[1] for n in names if n.count(".") >= 1}
    return out


def test_every_package_keeps_to_what_its_docstring_allows():
    assert packages() == ["io", "ops", "pixels", "rebalance", "report", "run", "stats"]
    problems = []
    for package in packages():
        ok = allowed(package) | {package, "__version__"}
        for module, used in imported_packages(package).items():
            for name in sorted(used - ok):
                problems.append(f"{module} imports ltaug.{name}, which ltaug/{package} may not import")
    assert not problems, "\n".join(problems)


def test_the_rules_are_a_flow_without_loops():
    """Package-level rules admit no cycle: read -> index -> plan -> pixels -> ops -> run -> report."""
    graph = {p: allowed(p) & set(packages()) for p in packages()}
    seen, order = set(), []

    def visit(p, stack):
        assert p not in stack, f"the packages' import rules loop: {' -> '.join([*stack, p])}"
        if p in seen:
            return
        for q in sorted(graph[p]):
            visit(q, [*stack, p])
        seen.add(p)
        order.append(p)

    for p in packages():
        visit(p, [])
    assert order.index("io") < order.index("rebalance") < order.index("pixels") < order.index("ops") \
        < order.index("run") < order.index("report")
