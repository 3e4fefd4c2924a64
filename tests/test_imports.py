"""evotune's own modules import each other without a circle.

The graph is built from the source (AST), not by importing: every `import` and
`from ... import` counts, at module level or inside a function, except those under
`if TYPE_CHECKING:` (type-only, never run). An import inside a function that would close
a circle is still a circle: it only moves the failure to run time. Importing
`evotune.a.b` also runs the package `evotune.a`, unless the importer is inside it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import evotune

PACKAGE = "evotune"
ROOT = Path(evotune.__file__).resolve().parent

# Cycles left for a later change, each named by its edges; empty when there are none.
ALLOWED: set[tuple[str, str]] = set()


def module_files() -> dict[str, Path]:
    """Module name -> file, for every module of the package."""
    files = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _run_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that can run (all but those in `if TYPE_CHECKING:` bodies)."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return found


def _base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    anchor = parts if is_package else parts[:-1]
    anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join(anchor + ([node.module] if node.module else []))


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = _base(module, is_package, node)
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def _with_packages(target: str, importer: str) -> list[str]:
    """The target and the packages above it that importing it runs."""
    parts = target.split(".")
    out = [target]
    for i in range(1, len(parts)):
        package = ".".join(parts[:i])
        if not (importer == package or importer.startswith(package + ".")):
            out.append(package)
    return out


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        for node in _run_imports(ast.parse(path.read_text(), str(path))):
            for target in _targets(name, is_package, node):
                for dep in _with_packages(target, name):
                    if dep in files and dep != name:
                        graph[name].add(dep)
    return graph


def find_cycle(graph: dict[str, set[str]], allowed: set[tuple[str, str]]) -> list[str] | None:
    """One import circle as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if (node, dep) in allowed:
                continue
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_graph_sees_the_package() -> None:
    graph = import_graph()
    assert "evotune.engine.spaces" in graph["evotune.engine.constraints"]
    assert len(graph) > 50


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph(), ALLOWED)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module that importing `start` imports, directly or not."""
    seen: set[str] = set()
    stack = [start]
    while stack:
        for dep in graph[stack.pop()] - seen:
            seen.add(dep)
            stack.append(dep)
    return seen


# DESIGN.md: data and models never import tasks (shared config bases live in
# evotune.sections); the engine knows nothing of torch models, data or training.
LAYERS = {
    "evotune.data": ("evotune.tasks",),
    "evotune.models": ("evotune.tasks",),
    "evotune.engine": ("evotune.tasks", "evotune.models", "evotune.data", "evotune.train"),
}


def test_layers_import_downwards_only() -> None:
    graph = import_graph()
    wrong = [
        f"{module} imports {dep}"
        for package, banned in LAYERS.items()
        for module in sorted(graph)
        if _within(module, package)
        for dep in sorted(reachable(graph, module))
        if any(_within(dep, b) for b in banned)
    ]
    assert not wrong, "\n".join(wrong)


def test_find_cycle_reports_the_path() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph, set()) == ["a", "b", "c", "a"]
    assert find_cycle(graph, {("c", "a")}) is None
