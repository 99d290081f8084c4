"""Seeding: reference data per docs/api.md, idempotent, never undoing an administrator's change."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime

import asyncpg

from manas360.queries.ops import seeding as seeding_queries
from manas360.security.passwords import verify_password
from manas360.services.access import catalog_defaults as reference
from manas360.services.ops.seeding import seed_superadmin
from tests.fixtures.accounts import API, Account, bearer, login, register, unique_email
from tests.fixtures.seeding import seed_catalog
from tests.fixtures.server import free_port


async def _rows(db, sql: str, *values):
    return await db.connection.execute_query_dict(sql, list(values))


async def test_reference_data_matches_the_contract(db):
    counts = await _reference_counts(db)
    assert counts["roles"] == 5 and counts["subscription_plans"] == 5 and counts["features"] == 14
    roles = {r["name"]: r["privilege_level"] for r in await _rows(db, "SELECT name, privilege_level FROM roles")}
    assert roles == {"guest": 0, "user": 10, "subscriber": 50, "admin": 90, "superadmin": 100}
    plans = [r["name"] for r in await _rows(db, "SELECT name FROM subscription_plans ORDER BY tier")]
    assert plans == ["free", "basic", "premium", "professional", "enterprise"]
    permissions = {r["name"] for r in await _rows(db, "SELECT name FROM permissions")}
    assert {
        "profile.read",
        "profile.write",
        "dashboard.read",
        "analytics.read",
        "users.read",
        "users.write",
        "roles.read",
        "roles.assign",
        "roles.manage",
        "plans.manage",
        "subscriptions.manage",
        "audit.read",
    } <= permissions


async def test_each_plan_includes_every_feature_of_the_tiers_below(db):
    rows = await _rows(
        db,
        "SELECT p.name AS plan, f.name AS feature FROM plan_features pf "
        "JOIN subscription_plans p ON p.id = pf.plan_id JOIN features f ON f.id = pf.feature_id",
    )
    features: dict[str, set[str]] = {}
    for row in rows:
        features.setdefault(row["plan"], set()).add(row["feature"])
    order = list(reference.PLANS)
    for cheaper, dearer in zip(order, order[1:], strict=False):
        assert features[cheaper] < features[dearer]
    assert "premium_dashboard" in features["premium"] and "premium_dashboard" not in features["basic"]
    assert "api_access" in features["professional"]
    assert len(features["enterprise"]) == 14


async def test_seeding_again_inserts_nothing_and_keeps_admin_changes(db, settings):
    await _rows(
        db,
        "DELETE FROM role_permissions WHERE role_id = (SELECT id FROM roles WHERE name='admin') "
        "AND permission_id = (SELECT id FROM permissions WHERE name='audit.read') RETURNING 1",
    )
    before = await _reference_counts(db)
    report = await seed_catalog(db, settings)
    assert (
        report.roles,
        report.permissions,
        report.plans,
        report.features,
        report.role_permissions,
        report.plan_features,
    ) == (0, 0, 0, 0, 0, 0)
    assert await _reference_counts(db) == before
    await _rows(
        db,
        "INSERT INTO role_permissions (role_id, permission_id) SELECT r.id, p.id "
        "FROM roles r, permissions p "
        "WHERE r.name='admin' AND p.name='audit.read' RETURNING 1",
    )


async def test_superadmin_is_created_then_unchanged_then_updated(app, db):
    email, deps = "Root.Admin@Example.COM ", app.ctx.deps
    first = await seed_superadmin(
        db=deps.db, settings=deps.settings, store=deps.store, email=email, password="first-password-1"
    )
    again = await seed_superadmin(
        db=deps.db, settings=deps.settings, store=deps.store, email=email, password="first-password-1"
    )
    rotated = await seed_superadmin(
        db=deps.db, settings=deps.settings, store=deps.store, email=email, password="second-password-2"
    )
    assert (first.status, again.status, rotated.status) == ("created", "unchanged", "updated")
    assert rotated.changes == ("password changed",) and rotated.sessions_revoked and not rotated.cache_error
    rows = await _rows(
        db,
        "SELECT u.email, u.password_hash, r.name AS role FROM user_accounts u "
        "JOIN roles r ON r.id = u.role_id WHERE u.email = $1",
        "root.admin@example.com",
    )
    assert len(rows) == 1 and rows[0]["role"] == "superadmin"
    assert await verify_password(password="second-password-2", password_hash=rows[0]["password_hash"])


def test_seed_command_is_idempotent_and_reports(environ, database):
    env = {
        **environ,
        "SUPERADMIN_EMAIL": "cli-root@example.com",
        "SUPERADMIN_PASSWORD": "cli-password-123",
        "PATH": "/usr/bin:/bin",
    }
    outputs = [
        subprocess.run(
            [sys.executable, "-m", "manas360.cli", "seed"], env=env, capture_output=True, text=True, timeout=60
        )
        for _ in range(2)
    ]
    assert [o.returncode for o in outputs] == [0, 0], outputs[0].stderr
    assert "superadmin cli-root@example.com: created" in outputs[0].stdout
    assert "+0 roles" in outputs[1].stdout and "superadmin cli-root@example.com: unchanged" in outputs[1].stdout


# -- the superadmin is never taken from somebody else ----------------------------------

ROOT_PASSWORD = "operator-chosen-secret-1"


async def _seed_cli(
    environ: dict[str, str], email: str, *args: str, password: str = ROOT_PASSWORD, **env: str
) -> subprocess.CompletedProcess:
    """`manas360 seed <args>` in a child process with SUPERADMIN_EMAIL/PASSWORD set."""
    child_env = {**environ, "SUPERADMIN_EMAIL": email, "SUPERADMIN_PASSWORD": password, "PATH": "/usr/bin:/bin", **env}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "manas360.cli",
        "seed",
        *args,
        env=child_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    done = subprocess.CompletedProcess(
        ["manas360", "seed", *args], process.returncode, stdout.decode(), stderr.decode()
    )
    assert password not in done.stdout + done.stderr  # never echoed, whatever happened
    assert "$2b$" not in done.stdout + done.stderr  # nor its bcrypt hash
    return done


async def _account(pg, email: str) -> dict:
    return dict(
        await pg.fetchrow(
            "SELECT u.id, u.password_hash, r.name AS role, u.tokens_valid_after, "
            "(SELECT count(*) FROM sessions s WHERE s.user_id = u.id AND s.revoked_at IS NULL) AS live_sessions, "
            "(SELECT count(*) FROM tokens t WHERE t.user_id = u.id AND t.revoked_at IS NULL) AS live_tokens "
            "FROM user_accounts u JOIN roles r ON r.id = u.role_id WHERE u.email = $1 AND u.deleted_at IS NULL",
            email,
        )
    )


async def _me(client, account_or_token) -> int:
    token = account_or_token if isinstance(account_or_token, str) else account_or_token.pair["access_token"]
    return (await client.get(f"{API}/me", headers=bearer(token))).status_code


async def _refresh(client, refresh_token: str):
    return await client.post(f"{API}/auth/refresh", json={"refresh_token": refresh_token})


async def test_seed_refuses_to_promote_an_existing_account(environ, client, pg):
    registrant = await register(client, email=unique_email("takeover"))
    before = await _account(pg, registrant.email)

    done = await _seed_cli(environ, registrant.email)

    assert done.returncode == 1, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "--promote-existing-superadmin" in done.stderr and registrant.email in done.stderr
    assert "Traceback" not in done.stderr
    assert await _account(pg, registrant.email) == before  # role, password, epoch, sessions untouched
    refreshed = await _refresh(client, registrant.refresh_token)
    assert refreshed.status_code == 200 and refreshed.json()["user"]["role"] == "user"
    assert await _me(client, refreshed.json()["access_token"]) == 200


async def test_promote_flag_makes_it_superadmin_and_kills_its_old_tokens(environ, client, pg):
    registrant = await register(client, email=unique_email("promoted"))
    assert await _me(client, registrant) == 200  # its context and revocations now cached in Redis
    before = await _account(pg, registrant.email)

    done = await _seed_cli(environ, registrant.email, "--promote-existing-superadmin")

    assert done.returncode == 0, done.stderr
    assert f"superadmin {registrant.email}: updated (promoted from user, password changed)" in done.stdout
    assert "revoked" in done.stdout and done.stderr == ""
    after = await _account(pg, registrant.email)
    assert after["role"] == "superadmin" and after["id"] == before["id"]
    assert (after["live_sessions"], after["live_tokens"]) == (0, 0)
    assert after["tokens_valid_after"] > (before["tokens_valid_after"] or datetime.min.replace(tzinfo=UTC))
    assert (await _refresh(client, registrant.refresh_token)).status_code == 401
    assert await _me(client, registrant) == 401
    assert (
        await client.post(f"{API}/auth/login", json={"email": registrant.email, "password": registrant.password})
    ).status_code == 401
    root = await login(client, Account(email=registrant.email, password=ROOT_PASSWORD, pair={}))
    assert root.pair["user"]["role"] == "superadmin" and await _me(client, root) == 200


async def test_password_rotation_by_seed_kills_the_superadmins_sessions(environ, client, pg):
    email = unique_email("rotated")
    assert (await _seed_cli(environ, email)).returncode == 0
    old = await login(client, Account(email=email, password=ROOT_PASSWORD, pair={}))
    assert await _me(client, old) == 200

    done = await _seed_cli(environ, email, password="a-rotated-secret-2", LOG_LEVEL="DEBUG")  # not even there

    assert done.returncode == 0, done.stderr
    assert f"superadmin {email}: updated (password changed)" in done.stdout and "revoked" in done.stdout
    assert (await _refresh(client, old.refresh_token)).status_code == 401
    assert await _me(client, old) == 401
    new = await login(client, Account(email=email, password="a-rotated-secret-2", pair={}))

    rerun = await _seed_cli(environ, email, password="a-rotated-secret-2")

    assert rerun.returncode == 0 and f"superadmin {email}: unchanged" in rerun.stdout, rerun.stderr
    assert "revoked" not in rerun.stdout
    assert await _me(client, new) == 200 and (await _refresh(client, new.refresh_token)).status_code == 200


async def test_redis_down_still_commits_the_revocation_and_says_so(environ, client, pg):
    email = unique_email("no-redis")
    assert (await _seed_cli(environ, email)).returncode == 0
    old = await login(client, Account(email=email, password=ROOT_PASSWORD, pair={}))
    before = await _account(pg, email)

    done = await _seed_cli(
        environ, email, password="rotated-without-redis-3", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"
    )

    assert done.returncode == 0, done.stderr
    assert "Redis unreachable" in done.stderr and "PostgreSQL" in done.stderr and "Traceback" not in done.stderr
    after = await _account(pg, email)
    assert (after["live_sessions"], after["live_tokens"]) == (0, 0)
    assert after["tokens_valid_after"] > (before["tokens_valid_after"] or datetime.min.replace(tzinfo=UTC))
    assert (await _refresh(client, old.refresh_token)).status_code == 401
    await login(client, Account(email=email, password="rotated-without-redis-3", pair={}))


async def test_two_seeds_at_once_both_succeed_with_one_superadmin(environ, pg, database):
    email = unique_email("twice")
    # Hold the seed lock until both seeders queue on it, so they start the superadmin step
    # together; a real bcrypt cost widens the window in which both find no account.
    holder = await asyncpg.connect(database.replace("postgres://", "postgresql://", 1))
    try:
        await holder.execute("SELECT pg_advisory_lock(hashtext('manas360.seed'))")
        seeders = asyncio.gather(*(_seed_cli(environ, email, BCRYPT_COST="12") for _ in range(2)))
        await _until(
            lambda: pg.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND NOT granted AND database = (SELECT oid FROM pg_database "
                "WHERE datname = current_database())"
            ),
            equals=2,
        )
        await holder.execute("SELECT pg_advisory_unlock(hashtext('manas360.seed'))")
        first, second = await seeders
    finally:
        await holder.close()
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    outcomes = sorted(o.stdout.rsplit(f"superadmin {email}: ", 1)[1].split()[0] for o in (first, second))
    assert outcomes == ["created", "unchanged"]
    assert await pg.fetchval("SELECT count(*) FROM user_accounts WHERE email = $1", email) == 1


async def _until(read, *, equals, timeout: float = 30.0) -> None:
    """Poll `read()` until it returns `equals` (the seeders' progress is only visible in PostgreSQL)."""
    async with asyncio.timeout(timeout):
        while await read() != equals:
            await asyncio.sleep(0.02)


async def test_a_failed_superadmin_write_is_one_line_without_the_hash(environ, pg):
    email = unique_email("refused-by-db")
    # A CHECK violation's DETAIL repeats the failing row, password hash included.
    await pg.execute(
        f"ALTER TABLE user_accounts ADD CONSTRAINT ck_test_seed_detail CHECK (email <> '{email}') NOT VALID"
    )
    try:
        done = await _seed_cli(environ, email)
    finally:
        await pg.execute("ALTER TABLE user_accounts DROP CONSTRAINT ck_test_seed_detail")
    assert done.returncode == 1, done.stdout
    assert len(done.stderr.strip().splitlines()) == 1 and "ck_test_seed_detail" in done.stderr, done.stderr
    assert await pg.fetchval("SELECT count(*) FROM user_accounts WHERE email = $1", email) == 0


def test_promote_flag_without_a_configured_superadmin_is_a_config_error(environ, database):
    env = {**environ, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "manas360.cli", "seed", "--promote-existing-superadmin"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "SUPERADMIN_EMAIL" in done.stderr


async def _reference_counts(db) -> dict[str, int]:
    return await seeding_queries.reference_counts(conn=db.connection)
