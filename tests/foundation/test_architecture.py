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

SQL = re.compile(r"""
      \bSELECT\b[\s\S]*\bFROM\b
    | ^\s*\(?\s*SELECT\s
    | \bINSERT\s+INTO\b
    | \bUPDATE\s+"?\w+"?\s+SET\b
    | \bDELETE\s+FROM\b
    | \bFOR\s+(?:NO\s+KEY\s+)?UPDATE\b
    | \bON\s+CONFLICT\b
    | \bJOIN\s+"?\w+"?\s+\w+\s+ON\b
    | ^\s*(?:WITH\s+\w+\s+AS|CREATE|ALTER|DROP|TRUNCATE|ANALYZE|SET\s+LOCAL|REFRESH|VACUUM|LOCK\s+TABLE)\b
""", re.VERBOSE | re.MULTILINE)


def _literals(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every string literal that is a value, f-strings with `{}` for each field."""
    prose = {id(node.value) for node in ast.walk(tree)
             if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
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
    return [f"{path.relative_to(ROOT)}:{line}: {' '.join(text.split())[:80]}"
            for line, text in _literals(tree) if SQL.search(text)]


def sql_literals_at(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [text for _, text in _literals(tree) if SQL.search(text)]


def _modules_outside_queries() -> list[Path]:
    return sorted(path for folder in SCANNED for path in folder.rglob("*.py") if QUERIES not in path.parents)


def test_no_sql_outside_the_queries_package():
    offenders = [hit for path in _modules_outside_queries() for hit in sql_literals(path)]
    assert not offenders, "SQL belongs in manas360/queries/ (one module per domain):\n" + "\n".join(offenders)


@pytest.mark.parametrize("statement", [
    'SELECT 1',
    "SELECT clock_timestamp() AS now",
    'SELECT "id" FROM "roles" WHERE "name" = $1',
    ' FOR NO KEY UPDATE',
    'UPDATE "user_accounts" SET "status" = $2 WHERE "id" = $1',
    'INSERT INTO "audit_logs" ("action") VALUES ($1)',
    'DELETE FROM "tokens" WHERE "id" = $1',
    '\n    WITH doomed AS (SELECT "id" FROM "t") DELETE FROM "t"',
    "SET LOCAL plan_cache_mode = force_custom_plan",
    'ANALYZE "user_accounts"',
    "CREATE DATABASE {}",
    'LEFT JOIN "subscription_plans" p ON p."id" = s."plan_id"',
    "INSERT INTO rate_limit_logs AS l (policy) SELECT * FROM unnest($1) ON CONFLICT (policy) DO NOTHING",
])
def test_the_tripwire_flags_every_statement_shape(statement, tmp_path):
    source = tmp_path / "module.py"
    # As a plain constant, and as an f-string (its literal parts joined around the fields).
    source.write_text(f"QUERY = {statement!r}\n\n\n"
                      f"async def f(conn, x):\n    await conn.execute({statement!r} f'{{x}}')\n")
    assert len(sql_literals_at(source)) == 2


@pytest.mark.parametrize("text", [
    "Redis refused the connection's AUTH or SELECT",
    "select a plan first",
    "the update failed",
    "must be one of active, disabled",
    "Lock the session row (FOR UPDATE) before reading",  # as a docstring: see below
])
def test_the_tripwire_leaves_prose_alone(text, tmp_path):
    source = tmp_path / "module.py"
    message = text.replace("FOR UPDATE", "for update")
    source.write_text(f'def f():\n    """{text}"""\n    raise ValueError({message!r})\n')
    assert sql_literals_at(source) == []


def test_the_queries_package_is_where_the_sql_is():
    assert sum(len(sql_literals(path)) for path in QUERIES.rglob("*.py")) > 50


QUERY_MODULES = sorted(".".join(path.relative_to(QUERIES).with_suffix("").parts)
                       for path in QUERIES.rglob("*.py") if path.stem != "__init__")


@pytest.mark.parametrize("name", QUERY_MODULES)
def test_query_modules_say_what_they_cover_and_take_keyword_arguments(name):
    module = importlib.import_module(f"manas360.queries.{name}")
    assert module.__doc__ and module.__doc__.strip(), (
        f"manas360/queries/{name.replace('.', '/')}.py needs a docstring (its tables)")
    functions = [value for key, value in vars(module).items()
                 if inspect.iscoroutinefunction(value) and value.__module__ == module.__name__
                 and not key.startswith("_")]
    assert functions, f"manas360/queries/{name.replace('.', '/')}.py has no query function"
    for function in functions:
        parameters = inspect.signature(function).parameters.values()
        positional = [p.name for p in parameters if p.kind is not inspect.Parameter.KEYWORD_ONLY]
        assert not positional, f"{name}.{function.__name__} takes {positional} positionally: make them keyword-only"
        assert "conn" in inspect.signature(function).parameters, f"{name}.{function.__name__} takes no conn"
