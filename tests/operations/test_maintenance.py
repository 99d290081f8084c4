"""Maintenance jobs (`manas360 maintenance <job>`) on prepared data: what goes, what stays,
a second run finds nothing, and failures are one line with a non-zero exit."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from manas360.services.ops import maintenance
from tests.fixtures.server import free_port
from tests.operations.helpers import run_cli

OLD_DAYS, RECENT_DAYS = 100, 10


@pytest.fixture
async def user_id(pg):
    """A plain user of this test's own; removed (with its rows) afterwards."""
    uid = uuid.uuid4()
    await pg.execute(
        "INSERT INTO user_accounts (id, email, password_hash, role_id) "
        "SELECT $1, $2, 'x', id FROM roles WHERE name = 'user'",
        uid,
        f"maint-{uid.hex}@example.com",
    )
    yield uid
    await pg.execute("DELETE FROM user_accounts WHERE id = $1", uid)


async def _session(pg, user_id, *, expires_in: str, token_expires_in: str | None) -> uuid.UUID:
    sid = uuid.uuid4()
    await pg.execute(
        f"INSERT INTO sessions (id, user_id, expires_at) VALUES ($1, $2, now() + interval '{expires_in}')", sid, user_id
    )
    if token_expires_in is not None:
        await pg.execute(
            "INSERT INTO tokens (id, session_id, user_id, token_hash, expires_at) "
            f"VALUES ($1, $2, $3, $4, now() + interval '{token_expires_in}')",
            uuid.uuid4(),
            sid,
            user_id,
            uuid.uuid4().hex,
        )
    return sid


async def test_cleanup_tokens_deletes_expired_rows_and_keeps_live_ones(pg, user_id):
    dead = await _session(pg, user_id, expires_in="-1 day", token_expires_in="-1 day")
    live = await _session(pg, user_id, expires_in="1 day", token_expires_in="1 day")
    jti_dead, jti_live = uuid.uuid4(), uuid.uuid4()
    await pg.execute(
        "INSERT INTO revoked_access_tokens (jti, user_id, expires_at) VALUES "
        "($1, $3, now() - interval '1 minute'), ($2, $3, now() + interval '10 minutes')",
        jti_dead,
        jti_live,
        user_id,
    )

    result = await maintenance.run_job(conn=pg, job="cleanup-tokens")
    assert list(result.counts.values()) == [1, 1, 1]
    assert {r[0] for r in await pg.fetch("SELECT id FROM sessions WHERE user_id = $1", user_id)} == {live}
    assert await pg.fetchval("SELECT count(*) FROM tokens WHERE session_id = $1", live) == 1
    assert await pg.fetchval("SELECT count(*) FROM tokens WHERE session_id = $1", dead) == 0
    assert {r[0] for r in await pg.fetch("SELECT jti FROM revoked_access_tokens WHERE user_id = $1", user_id)} == {
        jti_live
    }
    again = await maintenance.run_job(conn=pg, job="cleanup-tokens")
    assert list(again.counts.values()) == [0, 0, 0]


async def test_cleanup_tokens_works_through_rotation_chains_in_bounded_batches(pg, user_id):
    """Rotation chains tokens by parent_id (ON DELETE SET NULL): 40 expired links and their
    live successor go in batches of 7; the live token stays, with its parent link cleared."""
    sid = await _session(pg, user_id, expires_in="1 day", token_expires_in=None)
    ids = [uuid.uuid4() for _ in range(41)]
    for i, token_id in enumerate(ids):
        expires = "1 day" if i == len(ids) - 1 else f"-{len(ids) - i} minutes"
        await pg.execute(
            "INSERT INTO tokens (id, session_id, user_id, token_hash, parent_id, expires_at) "
            f"VALUES ($1, $2, $3, $4, $5, now() + interval '{expires}')",
            token_id,
            sid,
            user_id,
            token_id.hex,
            ids[i - 1] if i else None,
        )
    batches = []
    result = await maintenance.run_job(
        conn=pg, job="cleanup-tokens", batch_size=7, on_batch=lambda rows, total: batches.append(rows)
    )
    assert result.counts["expired refresh tokens deleted"] == 40 and result.batches == len(batches) == 6
    assert max(batches) <= 7 * 3  # at most batch_size of each kind per transaction
    assert await pg.fetchval("SELECT parent_id FROM tokens WHERE id = $1", ids[-1]) is None
    assert await pg.fetchval("SELECT count(*) FROM tokens WHERE session_id = $1", sid) == 1
    timeout = await pg.fetchval("SELECT setting FROM pg_settings WHERE name = 'statement_timeout'")
    assert int(timeout) == maintenance.BATCH_STATEMENT_TIMEOUT_MS


async def test_prune_rate_limit_logs_deletes_old_windows_only(pg):
    policy = f"t{uuid.uuid4().hex[:8]}"
    await pg.execute(
        "INSERT INTO rate_limit_logs (policy, key, window_start, blocked_count) VALUES "
        "($1, 'ip:192.0.2.1', now() - interval '30 days', 3), ($1, 'ip:192.0.2.1', now(), 1)",
        policy,
    )
    result = await maintenance.run_job(conn=pg, job="prune-rate-limit-logs", rate_limit_log_days=14)
    assert list(result.counts.values()) == [1]
    assert await pg.fetchval("SELECT count(*) FROM rate_limit_logs WHERE policy = $1", policy) == 1
    await pg.execute("DELETE FROM rate_limit_logs WHERE policy = $1", policy)


async def test_archive_audit_moves_old_rows_in_batches_and_keeps_recent_ones(pg):
    action = f"maint-{uuid.uuid4().hex[:8]}"
    await pg.execute(
        "INSERT INTO audit_logs (action, created_at) SELECT $1, now() - make_interval(days => d) "
        "FROM unnest($2::int[]) d",
        action,
        [OLD_DAYS] * 7 + [RECENT_DAYS] * 2,
    )
    old_ids = {
        r[0]
        for r in await pg.fetch(
            "SELECT id FROM audit_logs WHERE action = $1 AND created_at < now() - interval '90 days'", action
        )
    }
    batches: list[int] = []

    result = await maintenance.run_job(
        conn=pg, job="archive-audit", audit_days=90, batch_size=3, on_batch=lambda n, total: batches.append(n)
    )
    assert batches == [3, 3, 1] and result.batches == 3
    assert result.counts == {"audit rows older than 90 days archived": 7}
    archived = {r[0] for r in await pg.fetch("SELECT id FROM audit_logs_archive WHERE action = $1", action)}
    assert archived == old_ids
    assert await pg.fetchval("SELECT count(*) FROM audit_logs WHERE action = $1", action) == 2
    again = await maintenance.run_job(conn=pg, job="archive-audit", audit_days=90, batch_size=3)
    assert again.counts == {"audit rows older than 90 days archived": 0} and again.batches == 0


async def test_prune_login_attempts_deletes_only_rows_older_than_the_cutoff(pg):
    email = f"maint-{uuid.uuid4().hex[:8]}@example.com"
    await pg.execute(
        "INSERT INTO login_attempts (email, success, created_at) SELECT $1, false, now() - make_interval(days => d) "
        "FROM unnest($2::int[]) d",
        email,
        [40] * 5 + [1] * 2,
    )
    batches: list[int] = []

    result = await maintenance.run_job(
        conn=pg,
        job="prune-login-attempts",
        login_attempt_days=30,
        batch_size=2,
        on_batch=lambda n, total: batches.append(n),
    )
    assert batches == [2, 2, 1]
    assert result.counts == {"login attempts older than 30 days deleted": 5}
    assert await pg.fetchval("SELECT count(*) FROM login_attempts WHERE email = $1", email) == 2
    again = await maintenance.run_job(conn=pg, job="prune-login-attempts", login_attempt_days=30)
    assert again.counts == {"login attempts older than 30 days deleted": 0}


async def test_refresh_views_makes_new_users_and_their_plans_visible(pg, user_id):
    await pg.execute(
        "INSERT INTO user_subscriptions (id, user_id, plan_id, ends_at) "
        "SELECT $1, $2, id, now() + interval '30 days' FROM subscription_plans WHERE name = 'premium'",
        uuid.uuid4(),
        user_id,
    )
    assert await pg.fetchval("SELECT count(*) FROM mv_users_with_subscription WHERE user_id = $1", user_id) == 0

    result = await maintenance.run_job(conn=pg, job="refresh-views")
    assert set(result.counts) == {f"{view} rows" for view in maintenance.VIEWS}
    assert await pg.fetchval("SELECT plan FROM mv_users_with_subscription WHERE user_id = $1", user_id) == "premium"
    features = {r[0] for r in await pg.fetch("SELECT feature FROM mv_user_features WHERE user_id = $1", user_id)}
    assert "premium_dashboard" in features and "api_access" not in features
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM mv_user_permissions WHERE user_id = $1 AND permission = 'dashboard.read'", user_id
        )
        == 1
    )


async def test_a_job_steps_aside_while_another_run_of_it_holds_its_lock(pg, ops_settings):
    other = await asyncpg.connect(ops_settings.database_url.replace("postgres://", "postgresql://", 1))
    try:
        await other.execute("SELECT pg_advisory_lock(hashtext('manas360.maintenance.refresh-views'))")
        assert (await maintenance.run_job(conn=pg, job="refresh-views")).skipped
    finally:
        await other.close()
    assert not (await maintenance.run_job(conn=pg, job="refresh-views")).skipped


async def test_maintenance_command_reports_progress_and_every_job(ops_environ, pg):
    action = f"maint-{uuid.uuid4().hex[:8]}"
    await pg.execute(
        "INSERT INTO audit_logs (action, created_at) SELECT $1, now() - interval '100 days' FROM generate_series(1, 3)",
        action,
    )
    archive = await asyncio.to_thread(
        run_cli, ops_environ, "maintenance", "archive-audit", "--days", "90", "--batch-size", "2"
    )
    assert archive.returncode == 0, archive.stderr
    assert archive.stdout.splitlines()[:2] == [
        "archive-audit: batch of 2, 2 so far",
        "archive-audit: batch of 1, 3 so far",
    ]
    assert "archive-audit: 3 audit rows older than 90 days archived" in archive.stdout

    every = await asyncio.to_thread(run_cli, ops_environ, "maintenance", "all")
    assert every.returncode == 0, every.stderr
    lines = every.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == list(maintenance.JOBS)
    assert "0 audit rows older than 90 days archived" in lines[1]


async def test_maintenance_exits_1_with_one_line_when_the_database_is_unreachable(ops_environ):
    env = {**ops_environ, "DATABASE_URL": f"postgres://root@127.0.0.1:{free_port()}/nowhere"}
    result = await asyncio.to_thread(run_cli, env, "maintenance", "cleanup-tokens", timeout=30)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "database is unavailable" in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_failing_job_exits_1_with_one_line(ops_environ, ops_settings, pg):
    """A job whose SQL fails on a migrated database (its function renamed under it, as a
    hand-made change would): one line naming the job, exit 1. (A database never migrated is
    refused before any job runs: tests/foundation/test_cli.py.)"""
    await pg.execute("ALTER FUNCTION refresh_materialized_views() RENAME TO refresh_materialized_views_away")
    try:
        result = await asyncio.to_thread(run_cli, ops_environ, "maintenance", "refresh-views", timeout=30)
    finally:
        await pg.execute("ALTER FUNCTION refresh_materialized_views_away() RENAME TO refresh_materialized_views")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "manas360: maintenance refresh-views failed: UndefinedFunctionError: "
        "function refresh_materialized_views() does not exist"
    ), result.stderr
    missing = await asyncio.to_thread(
        run_cli, {**ops_environ, "DATABASE_URL": ops_settings.database_url + "_gone"}, "maintenance", "all", timeout=30
    )
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1
    assert "does not exist" in missing.stderr and "Traceback" not in missing.stderr


def test_bad_arguments_are_refused_before_any_work(ops_environ):
    result = run_cli(ops_environ, "maintenance", "archive-audit", "--days", "-1")
    assert result.returncode == 2 and "argument --days: expects a whole number >= 0, not -1" in result.stderr


def test_a_one_shot_command_ignores_a_servers_metrics_directory(environ, database, tmp_path):
    """PROMETHEUS_MULTIPROC_DIR inherited from a server's environment (here: gone) must not
    crash `seed` or a maintenance job, whose metrics are not the server's."""
    env = {**environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "gone")}
    for args in (("seed",), ("maintenance", "prune-rate-limit-logs")):
        result = run_cli(env, *args, timeout=60)
        assert result.returncode == 0, result.stderr
    assert not (tmp_path / "gone").exists()
