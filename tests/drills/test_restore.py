"""Drill: back up with `pg_dump -Fc`, restore into a new database, serve it with an empty
Redis — the procedure of docs/operations.md, with the machine's PostgreSQL tools.

A database is built through the API: live sessions (one rotated), a logged-out session
(its access token on the denylist), a deleted session, a user after logout-all, a locked
account. After the dump, more happens that the backup cannot know (a rotation, a login, a
registration, a logout). The dump goes into a new database (`createdb`, `pg_restore
--no-owner --exit-on-error`), `manas360 migrate` must find nothing to do, and an app on
the restored database with a brand-new redis-server must keep every revocation and the
lock the backup holds and serve its live sessions; what happened after the dump must
behave as the guide says. Last, the guide's remedies: a new signing key must refuse every
access token yet end no session, and its "log everyone out" statement must end them all.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from manas360.db import migrate, orm
from manas360.settings import Settings, load_settings
from tests.drills.helpers import DASHBOARD, answer, report
from tests.fixtures.accounts import API, Account, bearer, login, register
from tests.fixtures.app import client_for, running_app
from tests.fixtures.environment import delete_prefixed_keys, drop_database
from tests.fixtures.seeding import seed_catalog
from tests.fixtures.services import redis_server

pytestmark = pytest.mark.slow
LOCKOUT_THRESHOLD = 5  # the default, which test_environ leaves alone
PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin")
TOOL_TIMEOUT_S = 60
COUNTED_TABLES = ("user_accounts", "sessions", "tokens", "revoked_access_tokens", "login_attempts", "audit_logs")
# docs/operations.md, "Logging everyone out" (psql --single-transaction), word for word.
LOG_EVERYONE_OUT_SQL = """
UPDATE sessions SET revoked_at = now(), revoke_reason = 'restore' WHERE revoked_at IS NULL;
UPDATE tokens SET revoked_at = now() WHERE revoked_at IS NULL;
UPDATE user_accounts
   SET tokens_valid_after = GREATEST(tokens_valid_after, date_trunc('milliseconds', clock_timestamp())),
       updated_at = now();
"""


@dataclass
class Backed:
    """The accounts as the dump holds them (a pair each: the newest the client holds)."""

    rotated: Account  # `live`'s first session after one rotation before the dump
    second: Account  # `live`'s second session
    logged_out: Account  # POST /auth/logout: session revoked, access token's jti denied
    deleted: Account  # ended by DELETE /auth/sessions/{id} from `deleted_by`
    deleted_by: Account
    everywhere: list[Account]  # both sessions before POST /auth/logout-all
    everywhere_again: Account  # logged in after the logout-all: must live
    locked: Account  # LOCKOUT_THRESHOLD wrong passwords
    revoked_later: Account  # live at the dump, logged out after it


@dataclass
class After:
    """What happened on the old database after the dump."""

    second_rotated: Account  # `second` refreshed: a token the restored database never saw
    new_login: Account  # a new session of a known user
    new_user: Account  # registered after the dump


@pytest.fixture
async def databases(environ, redis_raw):
    """Environments for the source and the restored database (names of this drill's own)
    with one key prefix; both databases and the keys are removed at the end."""
    base = environ["DATABASE_URL"].rpartition("/")[0]
    tag = uuid.uuid4().hex[:8]
    prefix = f"{environ['REDIS_PREFIX']}restore-{tag}:"
    environs = {
        role: {**environ, "DATABASE_URL": f"{base}/m360_restore_{role}_{tag}", "REDIS_PREFIX": prefix}
        for role in ("source", "restored")
    }
    yield environs
    for each in environs.values():
        await drop_database(each["DATABASE_URL"])
    await delete_prefixed_keys(redis_raw, prefix)


async def test_a_restored_dump_keeps_revocations_and_locks_and_serves_live_sessions(
    databases, tmp_path, record_property
):
    source, restored = (load_settings(databases[role]) for role in ("source", "restored"))
    timings: dict[str, float | int] = {}
    clock = _Stopwatch(timings)
    await migrate(source)
    await asyncio.create_task(_seed(source), context=contextvars.Context())  # its ORM context stays its own
    clock.lap("create_source_s")

    dump = tmp_path / "manas360.dump"
    async with running_app(source) as app, client_for(app) as client:
        backed = await _build(client)
        clock.lap("build_s")
        counts = await _row_counts(source)
        _pg_tool("pg_dump", "-Fc", "-f", str(dump), source.database.database, settings=source)
        timings["dump_bytes"] = dump.stat().st_size
        clock.lap("dump_s")
        after = await _change_after_the_dump(client, backed)

    _pg_tool("createdb", restored.database.database, settings=restored)
    _pg_tool(
        "pg_restore", "--no-owner", "--exit-on-error", "-d", restored.database.database, str(dump), settings=restored
    )
    dump.unlink()
    clock.lap("restore_s")
    assert await _row_counts(restored) == counts
    assert _manas360("migrate", environ=databases["restored"]) == "database is up to date"
    clock.lap("migrate_s")

    with redis_server() as empty:
        assert await _key_count(empty.url) == 0  # nothing cached: every answer below comes from PostgreSQL
        serve = {**databases["restored"], "REDIS_URL": empty.url}
        async with running_app(load_settings(serve)) as app, client_for(app) as client:
            live = await _assert_backup_kept(client, backed)
            live += await _assert_after_the_dump_is_unknown(client, backed, after)
        clock.lap("restored_checks_s")

        # The guide's remedies: a new signing key (the old one not kept), then everyone logged out.
        settings = load_settings({**serve, "JWT_KEY_ID": "restore-k2", "JWT_SECRET": secrets.token_urlsafe(48)})
        async with running_app(settings) as app, client_for(app) as client:
            live = await _assert_new_key_ends_access_tokens_only(
                client, live, orphans=[after.new_login, after.second_rotated]
            )
            _psql(LOG_EVERYONE_OUT_SQL, settings=settings)
            await _flush(empty.url)  # the guide: run it before serving, with Redis empty
            await _assert_everyone_logged_out(client, live)
    clock.lap("remedy_s")
    timings["total_s"] = round(clock.total(), 3)
    report(record_property, "restore", timings)


# -- building the backed-up state through the API -------------------------------------------


async def _build(client: httpx.AsyncClient) -> Backed:
    live = await register(client)
    rotated = await _refresh(client, live)
    second = await login(client, live)

    logged_out = await register(client)
    assert (await client.post(f"{API}/auth/logout", headers=logged_out.headers)).status_code == 204

    deleted = await register(client)
    deleted_by = await login(client, deleted)
    session_id = await _session_id_of(client, deleted, asked_by=deleted_by)
    assert (await client.delete(f"{API}/auth/sessions/{session_id}", headers=deleted_by.headers)).status_code == 204

    everywhere = [await register(client)]
    everywhere.append(await login(client, everywhere[0]))
    assert (await client.post(f"{API}/auth/logout-all", headers=everywhere[1].headers)).status_code == 204
    everywhere_again = await login(client, everywhere[0])

    locked = await register(client)
    for _ in range(LOCKOUT_THRESHOLD):
        assert (await _login(client, locked.email, "wrong password")).status_code == 401
    assert answer(await _login(client, locked.email, locked.password)) == (423, "AccountLocked")

    revoked_later = await register(client)
    backed = Backed(
        rotated=rotated,
        second=second,
        logged_out=logged_out,
        deleted=deleted,
        deleted_by=deleted_by,
        everywhere=everywhere,
        everywhere_again=everywhere_again,
        locked=locked,
        revoked_later=revoked_later,
    )
    for revoked in (logged_out, deleted, *everywhere):  # the source agrees before anything is dumped
        assert await _me(client, revoked) == (401, "TokenRevoked")
    return backed


async def _change_after_the_dump(client: httpx.AsyncClient, backed: Backed) -> After:
    after = After(
        second_rotated=await _refresh(client, backed.second),
        new_login=await login(client, backed.rotated),
        new_user=await register(client),
    )
    assert (await client.post(f"{API}/auth/logout", headers=backed.revoked_later.headers)).status_code == 204
    return after


# -- what the restored service must answer --------------------------------------------------


async def _assert_backup_kept(client: httpx.AsyncClient, backed: Backed) -> list[Account]:
    """What the dump held survives; returns the live sessions' newest pairs."""
    # Live sessions: their access tokens work, their refresh tokens rotate.
    live = []
    for account in (backed.rotated, backed.deleted_by, backed.everywhere_again):
        assert await _me(client, account) == (200, "")
        assert answer(await client.get(DASHBOARD, headers=account.headers)) == (200, "")
        live.append(await _refresh(client, account))
        assert await _me(client, live[-1]) == (200, "")
    # Revoked before the dump: still revoked, with nothing in Redis to say so.
    for account in (backed.logged_out, backed.deleted, *backed.everywhere):
        assert await _me(client, account) == (401, "TokenRevoked")
        assert await _refresh_answer(client, account) == (401, "InvalidToken")
    # Locked before the dump: still locked, the right password included.
    locked = await _login(client, backed.locked.email, backed.locked.password)
    assert answer(locked) == (423, "AccountLocked")
    assert locked.json()["retry_after"] > 0
    return live


async def _assert_after_the_dump_is_unknown(client: httpx.AsyncClient, backed: Backed, after: After) -> list[Account]:
    """What happened after the dump is unknown; returns the newest pairs of the sessions live after all."""
    # A rotation after the dump: the newest refresh token is unknown, its parent is live again.
    assert await _refresh_answer(client, after.second_rotated) == (401, "InvalidToken")
    assert await _me(client, after.second_rotated) == (200, "")  # its access token, until exp
    second = await _refresh(client, backed.second)
    assert await _me(client, second) == (200, "")
    # A session opened after the dump: its access token lives until exp, its refresh token is unknown.
    assert await _me(client, after.new_login) == (200, "")
    assert await _refresh_answer(client, after.new_login) == (401, "InvalidToken")
    # A user registered after the dump does not exist.
    assert await _me(client, after.new_user) == (401, "TokenRevoked")
    assert await _refresh_answer(client, after.new_user) == (401, "InvalidToken")
    assert answer(await _login(client, after.new_user.email, after.new_user.password)) == (401, "InvalidCredentials")
    # A logout after the dump is lost: the session is live again (the guide's remedies).
    assert await _me(client, backed.revoked_later) == (200, "")
    revived = await _refresh(client, backed.revoked_later)
    assert await _me(client, revived) == (200, "")
    return [second, revived]


async def _assert_new_key_ends_access_tokens_only(
    client: httpx.AsyncClient, live: list[Account], *, orphans: list[Account]
) -> list[Account]:
    """Access tokens signed with a key no longer configured are refused, those of sessions
    the restored database does not know (`orphans`) too; the live sessions live on (refresh
    tokens are opaque, looked up by hash): returns their new pairs."""
    for account in orphans:
        assert await _me(client, account) == (401, "InvalidToken")
    renewed = []
    for account in live:
        assert await _me(client, account) == (401, "InvalidToken")
        renewed.append(await _refresh(client, account))
        assert await _me(client, renewed[-1]) == (200, "")
    return renewed


async def _assert_everyone_logged_out(client: httpx.AsyncClient, live: list[Account]) -> None:
    for account in live:
        assert await _me(client, account) == (401, "TokenRevoked")
        assert await _refresh_answer(client, account) == (401, "InvalidToken")
    assert await _me(client, await login(client, live[0])) == (200, "")  # logging in again works


# -- API moves --------------------------------------------------------------------------------


async def _login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(f"{API}/auth/login", json={"email": email, "password": password})


async def _refresh(client: httpx.AsyncClient, account: Account) -> Account:
    response = await client.post(f"{API}/auth/refresh", json={"refresh_token": account.refresh_token})
    assert response.status_code == 200, response.text
    return Account(email=account.email, password=account.password, pair=response.json())


async def _refresh_answer(client: httpx.AsyncClient, account: Account) -> tuple[int, str]:
    return answer(await client.post(f"{API}/auth/refresh", json={"refresh_token": account.refresh_token}))


async def _me(client: httpx.AsyncClient, account: Account) -> tuple[int, str]:
    return answer(await client.get(f"{API}/me", headers=bearer(account.pair["access_token"])))


async def _session_id_of(client: httpx.AsyncClient, account: Account, *, asked_by: Account) -> str:
    """The id of `account`'s session, listed from another session of the same user."""
    items = (await client.get(f"{API}/auth/sessions", headers=asked_by.headers)).json()["items"]
    others = [item["id"] for item in items if not item["current"]]
    assert len(others) == 1, items
    return others[0]


# -- the stores -------------------------------------------------------------------------------


async def _seed(settings: Settings) -> None:
    async with orm(settings) as db:
        await seed_catalog(db, settings)


async def _row_counts(settings: Settings) -> dict[str, int]:
    conn = await asyncpg.connect(**settings.database.connect_kwargs())
    try:
        return {table: await conn.fetchval(f'SELECT count(*) FROM "{table}"') for table in COUNTED_TABLES}
    finally:
        await conn.close()


async def _key_count(url: str) -> int:
    async with Redis.from_url(url) as redis:
        return await redis.dbsize()


async def _flush(url: str) -> None:
    async with Redis.from_url(url) as redis:
        await redis.flushdb()


def _pg_tool(tool: str, *args: str, settings: Settings, stdin: str | None = None) -> str:
    """Run a PostgreSQL client tool as an operator would: connection from PG* variables
    built from DATABASE_URL's pieces (docs/operations.md); its stdout."""
    done = subprocess.run(
        [_pg_bin(tool), *args],
        env={**os.environ, **_libpq_environ(settings)},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
    )
    assert done.returncode == 0, f"{tool} {' '.join(args)} failed ({done.returncode}):\n{done.stderr}"
    return done.stdout


def _psql(sql: str, *, settings: Settings) -> str:
    return _pg_tool(
        "psql",
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "--single-transaction",
        "-d",
        settings.database.database,
        settings=settings,
        stdin=sql,
    )


def _libpq_environ(settings: Settings) -> dict[str, str]:
    url = settings.database
    environ = {"PGHOST": url.host, "PGPORT": str(url.port), "PGUSER": url.user}
    if url.password:
        environ["PGPASSWORD"] = url.password
    if url.sslmode:
        environ["PGSSLMODE"] = url.sslmode
    return environ


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next((str(Path(d) / name) for d in PG_BIN_DIRS if (Path(d) / name).is_file()), None)
    if found is None:
        pytest.fail(f"PostgreSQL's {name} is not installed (apt-get install postgresql-client)")
    return found


def _manas360(*args: str, environ: dict[str, str]) -> str:
    """The installed `manas360` command on `environ`; its stdout, stripped."""
    command = Path(sys.executable).with_name("manas360")
    done = subprocess.run(
        [str(command), *args], env={**os.environ, **environ}, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S
    )
    assert done.returncode == 0, f"manas360 {' '.join(args)} failed ({done.returncode}):\n{done.stderr}"
    return done.stdout.strip()


class _Stopwatch:
    def __init__(self, laps: dict[str, float | int]) -> None:
        self.laps, self.started = laps, time.monotonic()
        self.last = self.started

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = round(now - self.last, 3)
        self.last = now

    def total(self) -> float:
        return time.monotonic() - self.started
