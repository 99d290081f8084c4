"""Synthetic users (`manas360 seed --users N`): counts, idempotency, the mix, the documented
password, progress output, and a consistent state after Ctrl-C."""

from __future__ import annotations

import asyncio
import io
import signal

import pytest

from manas360.cli import _Progress
from manas360.security.passwords import needs_rehash, verify_password
from manas360.services.ops.synthetic import (
    SYNTHETIC_DOMAIN,
    SYNTHETIC_PASSWORD,
    seed_synthetic_users,
    synthetic_email,
    synthetic_profile,
)
from tests.operations.helpers import cli_command, run_cli

PAID_PLANS = {"basic", "premium", "professional", "enterprise"}


@pytest.fixture
async def no_synthetic_users(pg):
    await pg.execute("DELETE FROM user_accounts WHERE email LIKE $1", f"%@{SYNTHETIC_DOMAIN}")


def _expected_subscriptions(count: int) -> int:
    return sum(len(synthetic_profile(i).subscriptions) for i in range(1, count + 1))


async def _synthetic_rows(pg) -> dict[int, dict]:
    """index -> role, plan now (free without an active subscription), subscription count."""
    rows = await pg.fetch(
        "SELECT u.email, r.name AS role, count(s.id) AS subscriptions, "
        "max(p.name) FILTER (WHERE s.status = 'active' AND s.ends_at > now()) AS plan "
        "FROM user_accounts u JOIN roles r ON r.id = u.role_id "
        "LEFT JOIN user_subscriptions s ON s.user_id = u.id LEFT JOIN subscription_plans p ON p.id = s.plan_id "
        "WHERE u.email LIKE $1 GROUP BY u.email, r.name",
        f"%@{SYNTHETIC_DOMAIN}",
    )
    return {
        int(r["email"][4:10]): {"role": r["role"], "plan": r["plan"] or "free", "subscriptions": r["subscriptions"]}
        for r in rows
    }


def _assert_matches_profiles(rows: dict[int, dict]) -> None:
    for index, row in rows.items():
        profile = synthetic_profile(index)
        assert row == {"role": profile.role, "plan": profile.plan, "subscriptions": len(profile.subscriptions)}, index


async def test_seeding_twice_creates_then_skips_every_user(ops_settings, pg, no_synthetic_users):
    first = await seed_synthetic_users(settings=ops_settings, count=500, batch_size=200)
    assert (first.created, first.skipped, first.batches) == (500, 0, 3)
    assert first.subscriptions == _expected_subscriptions(500)
    second = await seed_synthetic_users(settings=ops_settings, count=500, batch_size=200)
    assert (second.created, second.skipped, second.subscriptions) == (0, 500, 0)
    assert await pg.fetchval("SELECT count(*) FROM user_accounts WHERE email LIKE $1", f"%@{SYNTHETIC_DOMAIN}") == 500
    assert await pg.fetchval(
        "SELECT count(*) FROM user_subscriptions s JOIN user_accounts u ON u.id = s.user_id WHERE u.email LIKE $1",
        f"%@{SYNTHETIC_DOMAIN}",
    ) == _expected_subscriptions(500)


async def test_a_larger_run_adds_only_the_missing_users(ops_settings, pg, no_synthetic_users):
    await seed_synthetic_users(settings=ops_settings, count=300)
    report = await seed_synthetic_users(settings=ops_settings, count=450, batch_size=100)
    assert (report.created, report.skipped) == (150, 300)
    assert report.subscriptions == _expected_subscriptions(450) - _expected_subscriptions(300)
    _assert_matches_profiles(await _synthetic_rows(pg))


async def test_synthetic_users_mix_roles_and_plans_without_superadmins(ops_settings, pg, no_synthetic_users):
    await seed_synthetic_users(settings=ops_settings, count=500)
    rows = await _synthetic_rows(pg)
    assert len(rows) == 500
    _assert_matches_profiles(rows)
    roles = [row["role"] for row in rows.values()]
    assert set(roles) == {"user", "subscriber", "admin"}
    assert roles.count("user") > roles.count("subscriber") > roles.count("admin") > 0
    assert {row["plan"] for row in rows.values()} == {"free"} | PAID_PLANS
    assert any(row["plan"] == "free" and row["subscriptions"] == 0 for row in rows.values())
    statuses = {
        r[0]
        for r in await pg.fetch(
            "SELECT DISTINCT s.status FROM user_subscriptions s JOIN user_accounts u ON u.id = s.user_id "
            "WHERE u.email LIKE $1",
            f"%@{SYNTHETIC_DOMAIN}",
        )
    }
    assert statuses == {"active", "expired", "cancelled"}
    assert all(row["role"] == "subscriber" for row in rows.values() if row["plan"] != "free" and row["role"] != "admin")


async def test_every_synthetic_user_has_the_documented_password(ops_settings, pg, no_synthetic_users):
    await seed_synthetic_users(settings=ops_settings, count=250)
    hashes = await pg.fetch(
        "SELECT DISTINCT password_hash FROM user_accounts WHERE email LIKE $1", f"%@{SYNTHETIC_DOMAIN}"
    )
    assert len(hashes) == 1  # hashed once per run, shared by all
    sample = await pg.fetchval("SELECT password_hash FROM user_accounts WHERE email = $1", synthetic_email(123))
    assert await verify_password(password=SYNTHETIC_PASSWORD, password_hash=sample)
    assert not await verify_password(password="not-the-password", password_hash=sample)
    assert not needs_rehash(password_hash=sample, cost=ops_settings.bcrypt_cost)


async def test_seed_command_prints_a_line_per_batch_and_a_summary(ops_environ, no_synthetic_users):
    first = await asyncio.to_thread(run_cli, ops_environ, "seed", "--users", "1200", "--batch-size", "500")
    assert first.returncode == 0, first.stderr
    progress = [line for line in first.stderr.splitlines() if "users (" in line]
    assert [line.split()[0] for line in progress] == ["500/1200", "1000/1200", "1200/1200"]
    assert "synthetic users: 1200 created, 0 already existed" in first.stdout
    assert SYNTHETIC_PASSWORD in first.stdout
    second = await asyncio.to_thread(run_cli, ops_environ, "seed", "--users", "1200", "--batch-size", "500")
    assert second.returncode == 0, second.stderr
    assert "synthetic users: 0 created, 1200 already existed, 0 subscriptions" in second.stdout


def _interruptible() -> None:
    # A test run started in the background (a non-interactive shell's `&`, some CI runners)
    # ignores SIGINT, and an ignored signal stays ignored across exec: Python then installs
    # no Ctrl-C handler and the seeder would never see the interrupt this test sends.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def test_ctrl_c_keeps_whole_batches_and_a_rerun_completes(ops_environ, pg, no_synthetic_users):
    total, batch = 30_000, 500
    env = {**ops_environ, "PATH": "/usr/bin:/bin"}
    process = await asyncio.create_subprocess_exec(
        *cli_command("seed", "--users", str(total), "--batch-size", str(batch)),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=_interruptible,
    )
    while b"users (" not in (line := await asyncio.wait_for(process.stderr.readline(), 60)):
        assert line, "seeding ended before reporting a batch"
    process.send_signal(signal.SIGINT)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 130, stderr.decode()
    assert b"Traceback" not in stderr and b"interrupted after" in stderr

    rows = await _synthetic_rows(pg)
    assert 0 < len(rows) < total and len(rows) % batch == 0  # whole batches only
    assert set(rows) == set(range(1, len(rows) + 1))
    _assert_matches_profiles(rows)  # every user came with exactly its subscriptions

    rerun = await asyncio.to_thread(run_cli, ops_environ, "seed", "--users", str(total), "--batch-size", "5000")
    assert rerun.returncode == 0, rerun.stderr
    assert f"synthetic users: {total - len(rows)} created, {len(rows)} already existed" in rerun.stdout
    rows = await _synthetic_rows(pg)
    assert len(rows) == total
    assert sum(row["subscriptions"] for row in rows.values()) == _expected_subscriptions(total)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_lines_otherwise():
    terminal, pipe = _Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = _Progress(total=200, unit="users", stream=stream)
        progress.update(100)
        progress.update(200)
        progress.close()
    assert terminal.getvalue().count("\r[") == 2 and "200/200 users" in terminal.getvalue()
    assert terminal.getvalue().endswith("\n") and terminal.getvalue().count("\n") == 1
    assert [line.split()[0] for line in pipe.getvalue().splitlines()] == ["100/200", "200/200"]
