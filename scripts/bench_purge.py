"""scripts/bench --purge: `manas360 maintenance purge-deleted` at scale (not part of the test
suite).

One run on a fresh database: N synthetic users (`manas360 seed --users N`), every one of them
pending deletion past its grace, each with SESSIONS sessions (a refresh token each), AUDIT
audit entries whose before/after hold their address and name, and two login attempts; then
the real command, timed, against the machine's Redis under a private prefix. Prints a
Markdown table and appends it to BENCHMARKS.md (unless --no-append). The database is dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import time
from datetime import UTC, datetime

import asyncpg

from scripts.bench_run import cpu_model, log, publish, run_cli

SESSIONS = 2
AUDIT = 3


async def prepare(dsn: str) -> dict[str, int]:
    """Sessions, tokens, audit entries and login attempts for every user; all of them due."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            f"""
            INSERT INTO sessions (id, user_id, ip, user_agent, expires_at)
            SELECT gen_random_uuid(), u.id, '203.0.113.' || (k % 250), 'bench agent', now() + interval '7 days'
            FROM user_accounts u, generate_series(1, {SESSIONS}) k""",
        )
        await conn.execute(
            """
            INSERT INTO tokens (id, session_id, user_id, token_hash, expires_at)
            SELECT gen_random_uuid(), s.id, s.user_id, md5(s.id::text) || md5(s.user_id::text),
                   now() + interval '7 days'
            FROM sessions s""",
        )
        await conn.execute(
            f"""
            INSERT INTO audit_logs (actor_id, target_user_id, action, before, after, ip)
            SELECT u.id, u.id, 'bench.action',
                   jsonb_build_object('email', u.email, 'display_name', u.display_name),
                   jsonb_build_object('note', 'changed by ' || u.email, 'role', 'user'), '203.0.113.9'
            FROM user_accounts u, generate_series(1, {AUDIT}) k""",
        )
        await conn.execute(
            """
            INSERT INTO login_attempts (email, user_id, success, reason, ip, user_agent)
            SELECT u.email, u.id, k = 1, 'bench', '203.0.113.7', 'bench agent'
            FROM user_accounts u, generate_series(1, 2) k""",
        )
        await conn.execute(
            """
            UPDATE user_accounts SET status_before_deletion = status, status = 'pending_deletion',
                deletion_requested_at = now() - interval '8 days', deletion_at = now() - interval '1 day'
            WHERE status = 'active'""",
        )
        await conn.execute("ANALYZE")
        counts = {}
        for table in ("user_accounts", "sessions", "tokens", "audit_logs", "login_attempts"):
            counts[table] = await conn.fetchval(f'SELECT count(*) FROM "{table}"')
        counts["pending"] = await conn.fetchval(
            "SELECT count(*) FROM user_accounts WHERE status = 'pending_deletion' AND deleted_at IS NULL"
        )
        return counts
    finally:
        await conn.close()


async def leftovers(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(
            "SELECT count(*) FROM user_accounts WHERE status = 'pending_deletion' AND deleted_at IS NULL"
        )
    finally:
        await conn.close()


def _erased(out: str) -> int:
    found = re.search(r"(\d+) accounts erased", out)
    if found is None:
        raise SystemExit(f"bench: unexpected purge-deleted output:\n{out}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench --purge", description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args(argv)

    base = os.environ.get("TEST_DATABASE_URL", "postgres://root@127.0.0.1:5432")
    database = f"manas360_bench_purge_{os.getpid()}"
    env = {
        **os.environ,
        "ENV": "development",
        "DATABASE_URL": f"{base}/{database}",
        "REDIS_PREFIX": f"bench-purge-{os.getpid()}:",
        "LOG_LEVEL": "WARNING",
        "JWT_SECRET": os.environ.get("JWT_SECRET") or "bench-purge-" + "x" * 40,
    }
    dsn = env["DATABASE_URL"].replace("postgres://", "postgresql://", 1)
    try:
        log(f"seeding {args.users:,} users")
        run_cli("migrate", env=env)
        run_cli("seed", "--users", str(args.users), env=env)
        counts = asyncio.run(prepare(dsn))
        log(f"prepared: {counts}")
        started = time.perf_counter()
        out = run_cli("maintenance", "purge-deleted", "--batch-size", str(args.batch_size), env=env)
        elapsed = time.perf_counter() - started
        left = asyncio.run(leftovers(dsn))
        erased = _erased(out)
        again = run_cli("maintenance", "purge-deleted", env=env)
    finally:
        subprocess.run(["dropdb", "-h", "127.0.0.1", "--if-exists", "--force", database], check=False)
    rows = counts["sessions"] + counts["tokens"] + counts["audit_logs"] + counts["login_attempts"] + erased
    load = os.getloadavg()[0]
    table = (
        f"## purge-deleted at {args.users:,} accounts ({datetime.now(UTC):%Y-%m-%d}, {cpu_model()}, "
        f"{os.cpu_count()} cores, load average {load:.1f} at the end: the machine is shared)\n\n"
        "| accounts erased | sessions | refresh tokens | audit entries scrubbed | login attempts | batch | "
        "wall time (s) | accounts/s | rows/s | left pending | second run |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
        f"| {erased:,} | {counts['sessions']:,} | {counts['tokens']:,} | {counts['audit_logs']:,} | "
        f"{counts['login_attempts']:,} | {args.batch_size} | {elapsed:.1f} | {erased / elapsed:,.0f} | "
        f"{rows / elapsed:,.0f} | {left} | {_erased(again)} erased |\n\n"
        "Wall time is the whole command (connect, the batches, the Redis keys, the view refresh). Target: "
        "under 60 s for 100,000 accounts."
    )
    publish(table, append=not args.no_append)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
