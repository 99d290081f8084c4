"""PostgreSQL: the Tortoise configuration, database creation and migrations.

The same settings feed the app (per-worker pool), aerich's CLI (`TORTOISE_ORM`) and
`manas360 migrate`.
"""

from __future__ import annotations

import asyncio
import contextvars
import pkgutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
from loguru import logger

from manas360.queries.ops import database as database_queries
from manas360.settings import Settings
from manas360.slow_queries import slow_query_init

if TYPE_CHECKING:
    from tortoise.backends.base.client import BaseDBAsyncClient

MODELS_APP = "models"
MIGRATIONS_DIR = Path(str(resources.files("manas360.migrations")))
"""Installed with the package (a wheel needs no source tree); in a checkout, migrations/."""
# Any constant works; it only has to be the same for every instance of this service.
MIGRATION_LOCK_KEY = 0x6D333630  # "m360"
CONNECT_TIMEOUT_S = 5.0
"""Longest opening a pooled connection may take (asyncpg's default is 60 s)."""
COMMAND_TIMEOUT_MARGIN_S = 2.0
"""The client's own deadline per statement is the server's statement_timeout plus this.
A slow statement is still cancelled by the server first; a server that stopped answering
(frozen, partitioned) fails the call instead of holding the request forever. Nothing else
bounds it: asyncpg does not let a cancelled call (asyncio.wait_for, Sanic's response
timeout) return before the statement is over or this deadline has passed."""


def tortoise_config(settings: Settings, *, pool_min: int | None = None, pool_max: int | None = None) -> dict[str, Any]:
    """Tortoise config for `settings`; statement timeout and pool sizes per worker.

    The credentials are asyncpg's connect arguments from the parsed DATABASE_URL (decoded
    user and password, `ssl`): Tortoise hands every key it does not know to create_pool,
    `init` (the slow-query log, when DB_SLOW_QUERY_MS is set) included."""
    credentials = {
        **settings.database.connect_kwargs(),
        "minsize": pool_min or settings.db_pool_min,
        "maxsize": pool_max or settings.db_pool_max,
        "application_name": "manas360",
        "server_settings": {"statement_timeout": str(settings.db_statement_timeout)},
        "timeout": CONNECT_TIMEOUT_S,
        "command_timeout": command_timeout_s(settings),
    }
    init = slow_query_init(threshold_ms=settings.db_slow_query_ms)
    if init is not None:
        credentials["init"] = init
    return {
        "connections": {"default": {"engine": "tortoise.backends.asyncpg", "credentials": credentials}},
        "apps": {MODELS_APP: {"models": ["manas360.models", "aerich.models"], "default_connection": "default"}},
        "use_tz": True,
        "timezone": "UTC",
    }


def command_timeout_s(settings: Settings) -> float | None:
    """asyncpg's per-statement deadline; none when the statement timeout is disabled (0)."""
    if settings.db_statement_timeout <= 0:
        return None
    return settings.db_statement_timeout / 1000 + COMMAND_TIMEOUT_MARGIN_S


class Database:
    """PostgreSQL as a collaborator, passed as `db=` like the store: its pool, a connection
    for single statements (`db.connection`) and transactions
    (`async with db.transaction() as conn`).

    It wraps a Tortoise context of its own, and is the one place that touches Tortoise's
    private current-context variable. Tortoise 1.x looks its context up in a ContextVar
    (`tortoise.context._current_context`) when it opens a transaction; its public ways to
    set it are a context manager meant for a whole program and a process-wide "global
    fallback" (one per process: two apps in one test process would share and close each
    other's pools). So `transaction()` makes this context current for the transaction only
    (one ContextVar set and reset), and nothing else in the service needs it current: no
    per-request hook, no hidden state a test must set up first.
    tests/foundation/test_database.py fails loudly if a Tortoise upgrade moves the variable.
    Building one does no I/O; `open()` initialises the (lazy) pool, `close()` closes it.
    """

    __slots__ = ("_settings", "_pool_min", "_pool_max", "_ctx")

    def __init__(self, settings: Settings, *, pool_min: int | None = None, pool_max: int | None = None) -> None:
        from tortoise.context import TortoiseContext

        self._settings = settings
        self._pool_min, self._pool_max = pool_min, pool_max
        self._ctx = TortoiseContext()

    async def open(self) -> None:
        """Initialise Tortoise on this context (no connection yet: the pool is lazy)."""
        from tortoise.context import _current_context

        token = _current_context.set(self._ctx)  # init itself looks the context up
        try:
            await self._ctx.init(
                config=tortoise_config(self._settings, pool_min=self._pool_min, pool_max=self._pool_max)
            )
        finally:
            _current_context.reset(token)

    async def close(self) -> None:
        await self._ctx.close_connections()

    @property
    def connection(self) -> BaseDBAsyncClient:
        """The pool's client: each statement on it runs on its own (autocommit). Raises
        Tortoise's ConfigurationError before `open()`."""
        return self._ctx.db()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[BaseDBAsyncClient]:
        """One transaction on one pooled connection: committed when the block ends,
        rolled back when it raises."""
        from tortoise.context import _current_context

        token = _current_context.set(self._ctx)
        try:
            async with self._ctx.db()._in_transaction() as conn:
                yield conn
        finally:
            _current_context.reset(token)

    def pool_stats(self) -> dict[str, int]:
        """Pool sizes for /health and the gauges (zeros before the first connection)."""
        try:
            pool = getattr(self._ctx.db(), "_pool", None)
        except Exception:  # not opened (yet)
            pool = None
        if pool is None:
            return {"size": 0, "idle": 0, "max": 0}
        queue = getattr(pool, "_queue", None)  # asyncpg exposes no public waiter count
        waiting = len(getattr(queue, "_getters", ()) or ())
        return {
            "size": pool.get_size(),
            "idle": pool.get_idle_size(),
            "max": pool.get_max_size(),
            "in_use": pool.get_size() - pool.get_idle_size(),
            "waiting": waiting,
        }


@asynccontextmanager
async def orm(settings: Settings, *, pool_max: int = 4) -> AsyncIterator[Database]:
    """The database for command-line work (scripts, seeding): open, yield, close."""
    db = Database(settings, pool_min=1, pool_max=pool_max)
    await db.open()
    try:
        yield db
    finally:
        await db.close()


def database_name(settings: Settings) -> str:
    return settings.database.database


async def connect(
    settings: Settings,
    *,
    database: str | None = None,
    timeout: float = CONNECT_TIMEOUT_S,
    server_settings: dict[str, str] | None = None,
) -> asyncpg.Connection:
    """One asyncpg connection as DATABASE_URL says (TLS, decoded credentials), to the
    configured database or to `database`."""
    return await asyncpg.connect(
        **settings.database.connect_kwargs(database=database), timeout=timeout, server_settings=server_settings
    )


async def create_database_if_missing(settings: Settings) -> bool:
    """Create the configured database when it does not exist. Returns True if created."""
    name = database_name(settings)
    conn = await connect(settings, database="postgres")  # where CREATE DATABASE is issued
    try:
        if await database_queries.database_exists(conn=conn, name=name):
            return False
        try:
            await database_queries.create_database(conn=conn, name=name)
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):  # another instance won the race
            return False
        logger.info("created database {}", name)
        return True
    finally:
        await conn.close()


class DatabaseNotReady(Exception):
    """The configured database does not exist, or lacks migrations this code ships: the
    commands that need the schema say so in one line (exit 1) instead of failing on the first
    missing table. `manas360 migrate` is the remedy for both."""


def migration_files() -> list[str]:
    """The migration files this code ships, in order, named as aerich records them (aerich's
    own rule: `<number>_<name>.py` under the app's folder)."""
    modules = [
        module.name
        for module in pkgutil.iter_modules([str(MIGRATIONS_DIR / MODELS_APP)])
        if "_" in module.name and module.name.split("_")[0].isdigit()
    ]
    return [f"{name}.py" for name in sorted(modules, key=lambda name: int(name.split("_")[0]))]


def missing_database_message(settings: Settings) -> str:
    db = settings.database
    return (
        f"database {db.database!r} does not exist on PostgreSQL at {db.host}:{db.port} (`manas360 migrate` creates it)"
    )


def not_migrated_message(settings: Settings, detail: str) -> str:
    return f"database {settings.database.where} is not migrated ({detail}): run `manas360 migrate`"


async def check_schema(settings: Settings) -> None:
    """Raise DatabaseNotReady unless the database exists and every shipped migration is applied.

    A store that does not answer raises what connecting raised (the callers report it as
    unreachable)."""
    try:
        conn = await connect(settings)
    except asyncpg.InvalidCatalogNameError:
        raise DatabaseNotReady(missing_database_message(settings)) from None
    try:
        applied = await database_queries.applied_migrations(conn=conn, app=MODELS_APP)
    finally:
        await conn.close()
    if applied is None:
        raise DatabaseNotReady(not_migrated_message(settings, "no migration applied"))
    pending = [name for name in migration_files() if name not in applied]
    if pending:
        raise DatabaseNotReady(
            not_migrated_message(
                settings, f"{len(pending)} migration(s) pending, first {pending[0].removesuffix('.py')}"
            )
        )


def schema_problem(exc: BaseException, settings: Settings) -> str | None:
    """The one-line reason when `exc` (or what caused it: Tortoise wraps asyncpg's errors)
    says the database is missing or not migrated; None for anything else. The commands
    check first (`check_schema`); this catches a schema changed under them (a table dropped
    by hand while aerich's record stayed)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DatabaseNotReady):
            return str(current)
        if isinstance(current, asyncpg.InvalidCatalogNameError):
            return missing_database_message(settings)
        if isinstance(current, (asyncpg.UndefinedTableError, asyncpg.UndefinedFunctionError)):
            return not_migrated_message(settings, (str(current).splitlines() or ["?"])[0])
        current = current.__cause__ or current.__context__
    return None


async def migrate(settings: Settings) -> list[str]:
    """Apply pending aerich migrations; returns the files applied (empty when up to date).

    Two instances migrating at once would collide (aerich takes no lock), so the upgrade
    runs under a PostgreSQL advisory lock held on a separate connection.
    """
    await create_database_if_missing(settings)
    # aerich leaves its (closed) Tortoise context in the caller's contextvars; a fresh
    # context per run keeps a second migrate() in the same task, or the app, unaffected.
    return await asyncio.create_task(_upgrade_locked(settings), context=contextvars.Context())


async def _upgrade_locked(settings: Settings) -> list[str]:
    from aerich import Command

    lock_conn = await connect(settings)
    try:
        await database_queries.take_migration_lock(conn=lock_conn, key=MIGRATION_LOCK_KEY)
        async with Command(
            tortoise_config=tortoise_config(settings, pool_min=1, pool_max=2),
            app=MODELS_APP,
            location=str(MIGRATIONS_DIR),
        ) as command:
            applied = await command.upgrade(run_in_transaction=True)
        return applied
    finally:
        try:
            await database_queries.release_migration_lock(conn=lock_conn, key=MIGRATION_LOCK_KEY)
        finally:
            await lock_conn.close()


def __getattr__(name: str) -> Any:
    # aerich's CLI reads `manas360.db.TORTOISE_ORM` ([tool.aerich] in pyproject.toml).
    if name == "TORTOISE_ORM":
        from manas360.settings import load_settings

        return tortoise_config(load_settings())
    raise AttributeError(name)
