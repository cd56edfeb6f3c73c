"""The package's shape, read from its source: imports run one way, and every import
made inside a function (to break a cycle or to wait for the apps) says why.

A module-level import cycle works until someone reorders two imports; these tests
name the modules of any new one, so that it is cut where it is made.
"""

from __future__ import annotations

import ast
from pathlib import Path

import django_jobs

PACKAGE = Path(django_jobs.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py") if "migrations" not in path.parts}


def imported_modules(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The package's modules an import statement loads (``from . import x`` loads ``x``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in MODULES]
    base = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
    if node.level:
        base = base[: len(base) - node.level + 1]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    found = []
    for alias in node.names:
        submodule = f"{target}.{alias.name}"
        found.append(submodule if submodule in MODULES else target)
    return [name for name in found if name in MODULES and name != module]


def imports(module: str) -> tuple[set[str], list[tuple[int, str]]]:
    """(modules imported at module level, (line, module) imported inside functions).

    Imports under ``if TYPE_CHECKING:`` run only for the type checker and are left out.
    """
    at_top: set[str] = set()
    in_functions: list[tuple[int, str]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                for target in imported_modules(module, child):
                    if in_function:
                        in_functions.append((child.lineno, target))
                    else:
                        at_top.add(target)
            visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(ast.parse(MODULES[module].read_text()), False)
    return at_top, in_functions


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_modules_import_each_other_one_way():
    graph = {module: imports(module)[0] for module in MODULES}
    assert sum(len(targets) for targets in graph.values()) > 100  # the walk found the imports
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# Where a function imports a module of the package, the reason stands on the import's
# line or on the comment lines just above it (or, for a whole module, in its header).
MODULES_EXPLAINING_ALL_THEIR_LATE_IMPORTS = {
    "django_jobs": "# Each function below imports its module when called",
    "django_jobs.registry": "are imported inside the methods that use them",
    "django_jobs.apps": "def ready(self)",  # Django's documented place for imports that need the apps
}


def test_every_import_inside_a_function_says_why():
    unexplained = []
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        if MODULES_EXPLAINING_ALL_THEIR_LATE_IMPORTS.get(module, "\0") in "\n".join(lines):
            continue
        for line_number, target in imports(module)[1]:
            line = lines[line_number - 1]
            above = lines[max(0, line_number - 4): line_number - 1]
            if "#" not in line and not any(text.strip().startswith("#") for text in above):
                unexplained.append(f"{module}:{line_number} imports {target}: {line.strip()}")
    assert unexplained == []


# The layers of the README's Architecture picture, top to bottom: a module may import
# its own layer and the layers below. A module in no layer fails the test too, so the
# picture names every module there is.
LAYERS = [
    ("doors", ["admin", "api", "management", "metrics.collector", "metrics.views", "metrics.urls", "backend",
               "tasks_bridge", "task_results", "testing", "apps", ""]),
    ("operations", ["stats", "task_actions", "timeline", "checks"]),
    ("the worker process", ["worker"]),
    ("housekeeping", ["scheduler", "retention"]),
    ("enqueueing", ["enqueueing", "batch"]),
    ("one attempt of one task", ["execution"]),
    ("jobs", ["registry", "signatures", "context"]),
    ("engines", ["db.postgresql", "db.prepared_insert", "db.mysql", "db.sqlite"]),
    ("rows in plain SQL", ["inserting", "row_reader"]),
    ("data", ["models", "querysets", "events", "notify", "signals", "queues", "resilience", "users"]),
    ("the engine interface", ["db.engine", "db.flow", "db"]),
    ("ground", ["conf", "exceptions", "validation", "limits", "cron", "backoff", "metrics", "routers"]),
]


def layer_of(module: str) -> int:
    """The index of the layer naming ``module`` or the nearest package holding it."""
    name = module.removeprefix("django_jobs").removeprefix(".")
    while True:
        for index, (_, members) in enumerate(LAYERS):
            if name in members:
                return index
        if not name:
            raise AssertionError(f"{module} is in no layer of the README's picture")
        name = name.rpartition(".")[0]


def test_every_module_imports_only_its_own_layer_and_those_below():
    upward = []
    for module in MODULES:
        for target in imports(module)[0]:
            if layer_of(target) < layer_of(module):
                upward.append(f"{module} ({LAYERS[layer_of(module)][0]}) imports "
                              f"{target} ({LAYERS[layer_of(target)][0]})")
    assert upward == []


def test_only_the_engines_open_cursors():
    """Above ``db/`` no module runs SQL of its own: what differs by database is the engines'."""
    opening = []
    for module, path in MODULES.items():
        if module.startswith("django_jobs.db"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if ".cursor(" in line:
                opening.append(f"{module}:{number}: {line.strip()}")
    assert opening == []
