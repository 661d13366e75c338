"""The package layers point one way (docs/architecture.md), and no module grows past 600 lines.

An AST walk over ``src/dataflywheel`` collects every import of a top-level package (module-level
and function-level alike: a lazy import is still a dependency). A package may import any package
of a lower layer; within a layer only the pairs in ``SIBLINGS``; never a higher layer; and the
graph of top-level packages has no cycle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "dataflywheel"
MAX_LINES = 600

# Top to bottom; "dataflywheel" is the package's own __init__ (the public Python API).
LAYERS: list[set[str]] = [
    {"api", "cli", "dataflywheel"},
    {"wheel"},
    {"loop"},
    {
        "serve",
        "learn",
        "experiments",
        "label",
        "decide",
        "insight",
        "ingest",
        "keys",
        "simulate",
        "datasets",
    },
    {"evaluation", "store"},
    {"config"},
    {"errors"},
]

# Imports between packages of one layer, each for a reason (docs/architecture.md):
SIBLINGS: dict[str, set[str]] = {
    "serve": {"learn", "experiments"},  # serving loads model versions and routes experiment arms
    "experiments": {"learn"},  # an arm names a model version: the registry says if it can serve
    "label": {"ingest"},  # a label goes back into the event store as a strong event
    "insight": {"learn", "experiments"},  # dashboard pages show the registry and experiments
}

# Alembic's environment imports every package's tables to fill the shared metadata; it runs only
# inside store.migrate.upgrade(), never on import of the store.
EXCEPTIONS = {"store/migrations/env.py"}

# Imports that break the rules today, each with where the code goes; a test fails once an entry
# is no longer needed, so the list cannot outlive the fix.
PENDING: dict[str, str] = {}

# Database drivers and the prefix of SQLAlchemy's per-dialect keyword arguments: only the store
# uses them (see test_only_the_store_knows_the_driver).
DRIVERS = {"sqlite3", "psycopg", "psycopg2", "psycopg_pool"}
DIALECT_PREFIXES = ("sqlite_", "postgresql_")


def _package(path: Path) -> str:
    first = path.relative_to(SRC).parts[0]
    return "dataflywheel" if first == "__init__.py" else first.removesuffix(".py")


def _targets(node: ast.AST, module: list[str]) -> list[str]:
    """Absolute dotted names that ``node`` imports, from a module named by ``module``'s parts."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module.split(".") if node.module else []
    if node.level:
        base = module[: len(module) - node.level] + base
    # ``from dataflywheel import insight`` imports the subpackage, not the root package.
    return [".".join([*base, alias.name]) for alias in node.names]


def import_graph() -> dict[str, dict[str, list[str]]]:
    """package → imported package → the ``file:line`` places that import it."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC)
        if relative.as_posix() in EXCEPTIONS:
            continue
        module = ["dataflywheel", *relative.with_suffix("").parts]
        if module[-1] == "__init__":
            module = [*module[:-1], "__init__"]  # relative imports resolve from the package
        source = _package(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for name in _targets(node, module):
                parts = name.split(".")
                if parts[0] != "dataflywheel" or len(parts) < 2:
                    continue
                target = parts[1]
                exists = (SRC / target).is_dir() or (SRC / f"{target}.py").exists()
                if exists and target != source:
                    place = f"{relative}:{node.lineno}"
                    if place not in graph[source][target]:
                        graph[source][target].append(place)
    return graph


def _layer(package: str) -> int:
    for index, layer in enumerate(LAYERS):
        if package in layer:
            return index
    raise AssertionError(f"package {package!r} is in no layer: add it to LAYERS")


def forbidden(graph: dict[str, dict[str, list[str]]]) -> list[str]:
    """Every import that breaks the layer rules, as ``source -> target at file:line``."""
    found = []
    for source, targets in graph.items():
        for target, places in targets.items():
            upward = _layer(target) < _layer(source)
            sideways = _layer(target) == _layer(source) and target not in SIBLINGS.get(source, ())
            if upward or sideways:
                found.extend(
                    f"{source} -> {target} at {place}"
                    for place in places
                    if f"{place.split(':')[0]} -> {target}" not in PENDING
                )
    return sorted(found)


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """The import cycles between top-level packages (one path per strongly connected part)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_every_package_has_a_layer() -> None:
    packages = {_package(p) for p in SRC.rglob("*.py")}
    assert not [p for p in packages if not any(p in layer for layer in LAYERS)]


def test_imports_respect_the_layers() -> None:
    assert forbidden(import_graph()) == []


def test_no_import_cycle_between_packages() -> None:
    graph: dict[str, dict[str, list[str]]] = {}
    for source, targets in import_graph().items():  # pending imports left out, as above
        for target, places in targets.items():
            kept = [p for p in places if f"{p.split(':')[0]} -> {target}" not in PENDING]
            if kept:
                graph.setdefault(source, {})[target] = kept
    assert cycles(graph) == []


def test_pending_entries_are_still_needed() -> None:
    graph = import_graph()
    present = {
        f"{place.split(':')[0]} -> {target}"
        for targets in graph.values()
        for target, places in targets.items()
        for place in places
    }
    assert [entry for entry in PENDING if entry not in present] == []


def test_the_check_catches_an_upward_import_and_a_cycle() -> None:
    """The rules themselves: a store importing serve is upward, learn ⇄ evaluation a cycle."""
    graph = {"store": {"serve": ["store/x.py:1"]}, "serve": {"store": ["serve/y.py:1"]}}
    assert forbidden(graph) == ["store -> serve at store/x.py:1"]
    assert cycles(graph) == [["serve", "store", "serve"]]
    assert forbidden({"experiments": {"serve": ["experiments/z.py:3"]}}) == [
        "experiments -> serve at experiments/z.py:3"
    ]


def test_function_level_and_relative_imports_count(tmp_path: Path) -> None:
    tree = ast.parse("def f():\n    from ..serve import service\n    import dataflywheel.loop\n")
    names = [n for node in ast.walk(tree) for n in _targets(node, ["dataflywheel", "store", "x"])]
    assert names == ["dataflywheel.serve.service", "dataflywheel.loop"]


def driver_tricks(source: str) -> list[str]:
    """``line: what`` for each place in a module's source that imports a database driver or
    depends on the dialect: reads a ``.dialect`` attribute, imports SQLAlchemy's dialects,
    compiles per dialect (``@compiles(x, "sqlite")``) or passes a dialect's keyword argument
    (``sqlite_where=``)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        for name in names:
            if name.split(".")[0] in DRIVERS or name.startswith(("adbc_driver", "sqlalchemy.dial")):
                found.append((line, f"imports {name}"))
        if isinstance(node, ast.Attribute) and node.attr == "dialect":
            found.append((line, f"reads {ast.unparse(node)}"))
        if isinstance(node, ast.Call):
            if ast.unparse(node.func).split(".")[-1] == "compiles" and len(node.args) > 1:
                found.append((line, f"compiles for {ast.unparse(node.args[1])}"))
            found.extend(
                (line, f"passes {kw.arg}=")
                for kw in node.keywords
                if kw.arg and kw.arg.startswith(DIALECT_PREFIXES)
            )
    return [f"{line}: {what}" for line, what in sorted(found)]


def test_only_the_store_knows_the_driver() -> None:
    """Every driver-specific trick lives in ``store/`` (docs/architecture.md, "Drivers")."""
    found = [
        f"{path.relative_to(SRC)}:{place}"
        for path in sorted(SRC.rglob("*.py"))
        if path.relative_to(SRC).parts[0] != "store"
        for place in driver_tricks(path.read_text(encoding="utf-8"))
    ]
    assert found == []


def test_the_driver_check_catches_each_trick() -> None:
    source = (
        "import sqlite3\n"
        "from psycopg import sql\n"
        "import adbc_driver_postgresql.dbapi\n"
        "from sqlalchemy.dialects import postgresql\n"
        "if conn.dialect.name == 'sqlite': pass\n"
        "threads = WRITERS[store.dialect]\n"
        "@compiles(day_of, 'sqlite')\ndef f(): pass\n"
        "Index('ix', c, sqlite_where=w)\n"
        "from dataflywheel.store.dialect import day_of\n"
    )
    assert driver_tricks(source) == [
        "1: imports sqlite3",
        "2: imports psycopg",
        "3: imports adbc_driver_postgresql.dbapi",
        "4: imports sqlalchemy.dialects",
        "5: reads conn.dialect",
        "6: reads store.dialect",
        "7: compiles for 'sqlite'",
        "9: passes sqlite_where=",
    ]


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_over_600_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(SRC)} has {lines} lines (at most {MAX_LINES})"
