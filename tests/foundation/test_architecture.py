"""Layering rules read from the source: every hand-written SQL statement lives in
manas360/queries/, one module per domain, as keyword-only functions over a connection.

The SQL check reads string literals (docstrings and other bare string statements aside,
since prose may say "FOR UPDATE") and looks for the shapes of a statement, upper case as
the project writes them. It is a tripwire, not a parser: it must flag every statement this
codebase has held, and nothing else.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ROOT / "manas360" / "queries"
SCANNED = [ROOT / "manas360", ROOT / "blueprints"]

SQL = re.compile(
    r"""
      \bSELECT\b[\s\S]*\bFROM\b
    | ^\s*\(?\s*SELECT\s
    | \bINSERT\s+INTO\b
    | \bUPDATE\s+"?\w+"?\s+SET\b
    | \bDELETE\s+FROM\b
    | \bFOR\s+(?:NO\s+KEY\s+)?UPDATE\b
    | \bON\s+CONFLICT\b
    | \bJOIN\s+"?\w+"?\s+\w+\s+ON\b
    | ^\s*(?:WITH\s+\w+\s+AS|CREATE|ALTER|DROP|TRUNCATE|ANALYZE|SET\s+LOCAL|REFRESH|VACUUM|LOCK\s+TABLE)\b
""",
    re.VERBOSE | re.MULTILINE,
)


def _literals(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every string literal that is a value, f-strings with `{}` for each field."""
    prose = {
        id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    prose |= {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(part.value if isinstance(part, ast.Constant) else "{}" for part in node.values)
            found.append((node.lineno, text))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            found.append((node.lineno, node.value))
    return found


def sql_literals(path: Path) -> list[str]:
    """`path:line: text` for every SQL-looking string literal of a Python file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{path.relative_to(ROOT)}:{line}: {' '.join(text.split())[:80]}"
        for line, text in _literals(tree)
        if SQL.search(text)
    ]


def sql_literals_at(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [text for _, text in _literals(tree) if SQL.search(text)]


def _modules_outside_queries() -> list[Path]:
    return sorted(path for folder in SCANNED for path in folder.rglob("*.py") if QUERIES not in path.parents)


def test_no_sql_outside_the_queries_package():
    offenders = [hit for path in _modules_outside_queries() for hit in sql_literals(path)]
    assert not offenders, "SQL belongs in manas360/queries/ (one module per domain):\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT 1",
        "SELECT clock_timestamp() AS now",
        'SELECT "id" FROM "roles" WHERE "name" = $1',
        " FOR NO KEY UPDATE",
        'UPDATE "user_accounts" SET "status" = $2 WHERE "id" = $1',
        'INSERT INTO "audit_logs" ("action") VALUES ($1)',
        'DELETE FROM "tokens" WHERE "id" = $1',
        '\n    WITH doomed AS (SELECT "id" FROM "t") DELETE FROM "t"',
        "SET LOCAL plan_cache_mode = force_custom_plan",
        'ANALYZE "user_accounts"',
        "CREATE DATABASE {}",
        'LEFT JOIN "subscription_plans" p ON p."id" = s."plan_id"',
        "INSERT INTO rate_limit_logs AS l (policy) SELECT * FROM unnest($1) ON CONFLICT (policy) DO NOTHING",
    ],
)
def test_the_tripwire_flags_every_statement_shape(statement, tmp_path):
    source = tmp_path / "module.py"
    # As a plain constant, and as an f-string (its literal parts joined around the fields).
    source.write_text(
        f"QUERY = {statement!r}\n\n\nasync def f(conn, x):\n    await conn.execute({statement!r} f'{{x}}')\n"
    )
    assert len(sql_literals_at(source)) == 2


@pytest.mark.parametrize(
    "text",
    [
        "Redis refused the connection's AUTH or SELECT",
        "select a plan first",
        "the update failed",
        "must be one of active, disabled",
        "Lock the session row (FOR UPDATE) before reading",  # as a docstring: see below
    ],
)
def test_the_tripwire_leaves_prose_alone(text, tmp_path):
    source = tmp_path / "module.py"
    message = text.replace("FOR UPDATE", "for update")
    source.write_text(f'def f():\n    """{text}"""\n    raise ValueError({message!r})\n')
    assert sql_literals_at(source) == []


def test_the_queries_package_is_where_the_sql_is():
    assert sum(len(sql_literals(path)) for path in QUERIES.rglob("*.py")) > 50


QUERY_MODULES = sorted(
    ".".join(path.relative_to(QUERIES).with_suffix("").parts)
    for path in QUERIES.rglob("*.py")
    if path.stem != "__init__"
)


@pytest.mark.parametrize("name", QUERY_MODULES)
def test_query_modules_say_what_they_cover_and_take_keyword_arguments(name):
    module = importlib.import_module(f"manas360.queries.{name}")
    assert module.__doc__ and module.__doc__.strip(), (
        f"manas360/queries/{name.replace('.', '/')}.py needs a docstring (its tables)"
    )
    functions = [
        value
        for key, value in vars(module).items()
        if inspect.iscoroutinefunction(value) and value.__module__ == module.__name__ and not key.startswith("_")
    ]
    assert functions, f"manas360/queries/{name.replace('.', '/')}.py has no query function"
    for function in functions:
        parameters = inspect.signature(function).parameters.values()
        positional = [p.name for p in parameters if p.kind is not inspect.Parameter.KEYWORD_ONLY]
        assert not positional, f"{name}.{function.__name__} takes {positional} positionally: make them keyword-only"
        assert "conn" in inspect.signature(function).parameters, f"{name}.{function.__name__} takes no conn"
        returns = str(inspect.signature(function).return_annotation)
        assert "Any" not in returns, (
            f"{name}.{function.__name__} returns {returns}: return a NamedTuple or frozen dataclass, not a dict"
        )


# The layers, top to bottom: a module may import its own layer and the layers below it,
# never one above. Each layer is a set of module prefixes (the longest matching prefix
# wins); what matches none of them is `foundation`.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("wiring", ("manas360.app", "manas360.server", "manas360.cli", "manas360.cli_users", "manas360.openapi")),
    ("blueprints", ("manas360.blueprints",)),
    ("http", ("manas360.http", "manas360.access_log")),
    ("container", ("manas360.container",)),
    ("services", ("manas360.services",)),
    ("edge", ("manas360.edge",)),
    ("data", ("manas360.db", "manas360.clock", "manas360.after_commit", "manas360.configured_store")),
    ("queries", ("manas360.queries",)),
    # settings, errors, metrics (the series; manas360.http.metrics installs them), security,
    # models, logs; and the app's type, which every layer that annotates the app imports.
    ("foundation", ("manas360", "manas360.http.sanic_types")),
    ("store", ("manas360.store",)),
]
LAYER_FOLDERS = {"manas360": "manas360", "blueprints": "manas360.blueprints", "store": "manas360.store"}


def _layer(module: str) -> int:
    matches = [
        (len(prefix), index)
        for index, (_, prefixes) in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    return max(matches)[1]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([LAYER_FOLDERS[parts[0]], *parts[1:]])


def _our_imports(path: Path, module: str, known: set[str]) -> list[tuple[int, str]]:
    """(line, module) of every import of ours in `path`, at any depth (a lazy import is an arrow
    too), except under `if TYPE_CHECKING:`: an annotation may name any layer's type, which
    makes no import at run time."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_type_checking(node.test)
        for statement in node.body
        for inner in ast.walk(statement)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            # `from manas360 import db` imports the module manas360.db, not the package.
            found += [
                (node.lineno, f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
                for alias in node.names
            ]
    return [(line, name) for line, name in found if name == "manas360" or name.startswith("manas360.")]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def test_import_layers():
    """wiring > blueprints > http > container > services > edge > data > queries > foundation > store:
    no import runs back up (a leaf like metrics importing the server, the edge importing a service)."""
    paths = {path: _module_name(path) for folder in LAYER_FOLDERS for path in (ROOT / folder).rglob("*.py")}
    known = set(paths.values())
    offenders = []
    for path, module in sorted(paths.items()):
        for line, imported in _our_imports(path, module, known):
            if _layer(imported) < _layer(module):
                offenders.append(
                    f"{path.relative_to(ROOT)}:{line}: {module} ({LAYERS[_layer(module)][0]}) "
                    f"imports {imported} ({LAYERS[_layer(imported)][0]}), a layer above it"
                )
    assert not offenders, (
        "imports must run down the layers (" + " > ".join(name for name, _ in LAYERS) + "):\n" + "\n".join(offenders)
    )


def test_the_layer_check_names_the_offending_import(tmp_path, monkeypatch):
    leaf = tmp_path / "manas360" / "metrics.py"
    leaf.parent.mkdir()
    leaf.write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from manas360.app import App\n\n\n"
        "def render():\n    from manas360.server import MULTIPROC_ENV\n"
    )
    imports = _our_imports(leaf, "manas360.metrics", {"manas360.server", "manas360.app"})
    assert imports == [(8, "manas360.server")]  # the annotation-only import is no arrow
    assert _layer("manas360.server") < _layer("manas360.metrics")
    assert _layer("manas360.edge.ratelimit") > _layer("manas360.services.access.entitlements")
    assert LAYERS[_layer("manas360.store.keys")][0] == "store"
