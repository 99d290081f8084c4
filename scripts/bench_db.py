"""scripts/bench --db: the database as it grows (not part of the test suite).

One run on a fresh database: N synthetic users; the admin search (`q=`) timed through the
service's own query; then 1,000,000 refresh tokens in rotation chains (parent_id links,
half of them expired) cleaned by `manas360 maintenance cleanup-tokens` while a client
keeps logging in and refreshing against `manas360 serve`, whose latency is compared with
the same client's before the cleanup. Prints a Markdown table and appends it to
BENCHMARKS.md (unless --no-append).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

from scripts.bench_run import PY, ROOT, SYNTHETIC_PASSWORD, UNLIMITED, Processes, free_port, log, run_cli, wait_http

SEARCHES = ("user000042", "000123", "synthetic", "no-such-person", "user0999")
CHAIN = 10  # refresh tokens per session: the first half expired


async def search_ms(settings, *, runs: int) -> dict[str, float]:
    """Median and worst time of the admin listing's search query per term, in ms."""
    from manas360.db import orm
    from manas360.services.admin import users as admin

    timings: dict[str, float] = {}
    async with orm(settings) as db:
        for term in SEARCHES:
            samples = []
            for _ in range(runs):
                started = time.perf_counter()
                await admin.list_users(db=db, limit=20, cursor=None, q=term)
                samples.append((time.perf_counter() - started) * 1000)
            timings[term] = statistics.median(samples)
    return timings


async def make_token_chains(dsn: str, *, tokens: int) -> int:
    """`tokens` refresh tokens, CHAIN per live session, linked by parent_id; half expired."""
    sessions = tokens // CHAIN
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """
            INSERT INTO sessions (id, user_id, expires_at)
            SELECT md5('s' || n)::uuid, u.id, now() + interval '7 days'
            FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM user_accounts) u
            WHERE u.n <= $1::bigint""",
            sessions,
        )
        await conn.execute(
            """
            INSERT INTO tokens (id, session_id, user_id, token_hash, parent_id, created_at, expires_at)
            SELECT md5('t' || s.n || '-' || k)::uuid, s.id, s.user_id, md5('h' || s.n || '-' || k) || md5(k::text),
                   CASE WHEN k > 1 THEN md5('t' || s.n || '-' || (k - 1))::uuid END,
                   now() - interval '8 days',
                   CASE WHEN k <= $2::int / 2 THEN now() - make_interval(mins => $2::int - k)
                        ELSE now() + interval '7 days' END
            FROM (SELECT id, user_id, row_number() OVER (ORDER BY id) AS n FROM sessions LIMIT $1::bigint) s,
                 generate_series(1, $2::int) k""",
            sessions,
            CHAIN,
        )
        await conn.execute("ANALYZE tokens; ANALYZE sessions")
        return await conn.fetchval("SELECT count(*) FROM tokens")
    finally:
        await conn.close()


async def drive(url: str, emails: list[str], *, stop: asyncio.Event) -> list[float]:
    """Log in then refresh, one after another, until `stop`: each round trip's ms."""
    samples: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        i = 0
        while not stop.is_set():
            email = emails[i % len(emails)]
            i += 1
            started = time.perf_counter()
            pair = await client.post("/api/v1/auth/login", json={"email": email, "password": SYNTHETIC_PASSWORD})
            pair.raise_for_status()
            samples.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": pair.json()["refresh_token"]})
            refreshed.raise_for_status()
            samples.append((time.perf_counter() - started) * 1000)
    return samples


async def during(url: str, emails: list[str], action) -> tuple[list[float], object]:
    stop = asyncio.Event()
    client = asyncio.create_task(drive(url, emails, stop=stop))
    try:
        result = await action()
    finally:
        stop.set()
    return await client, result


def p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench --db", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--baseline-s", type=float, default=15.0)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args(argv)

    base = os.environ.get("TEST_DATABASE_URL", "postgres://root@127.0.0.1:5432")
    database = "manas360_bench_db"
    port = free_port()
    env = {
        **os.environ,
        "ENV": "development",
        "DATABASE_URL": f"{base}/{database}",
        "REDIS_PREFIX": f"bench-db-{os.getpid()}:",
        "LOG_LEVEL": "WARNING",
        "LOG_JSON": "1",
        "RATE_LIMIT_GLOBAL": UNLIMITED,
        "RATE_LIMIT_AUTH": UNLIMITED,
        "RATE_LIMIT_API": UNLIMITED,
        "PORT": str(port),
        "WORKERS": os.environ.get("WORKERS", "2"),
        "JWT_SECRET": os.environ.get("JWT_SECRET") or "bench-db-" + "x" * 40,
    }
    dsn = env["DATABASE_URL"].replace("postgres://", "postgresql://", 1)
    subprocess.run(["dropdb", "-h", "127.0.0.1", "--if-exists", "--force", database], check=False)
    log(f"seeding {args.users:,} users")
    run_cli("migrate", env=env)
    run_cli("seed", "--users", str(args.users), env=env)

    from manas360.settings import load_settings

    settings = load_settings(env)
    searches = asyncio.run(search_ms(settings, runs=7))
    log(f"admin search medians (ms): {searches}")

    log(f"making {args.tokens:,} refresh tokens in chains of {CHAIN}")
    total = asyncio.run(make_token_chains(dsn, tokens=args.tokens))
    processes = Processes()
    logs = Path(tempfile.mkdtemp(prefix="manas360-bench-db-"))
    try:
        processes.start([PY, "-m", "manas360.cli", "serve"], env=env, log_path=logs / "serve.log")
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health/ready", log_path=logs / "serve.log")
        emails = [f"user{n:06d}@synthetic.manas360.test" for n in range(1, 201)]

        async def idle() -> None:
            await asyncio.sleep(args.baseline_s)

        async def cleanup() -> float:
            started = time.monotonic()
            await asyncio.to_thread(run_cli, "maintenance", "cleanup-tokens", env=env)
            return time.monotonic() - started

        before, _ = asyncio.run(during(url, emails, idle))
        while_cleaning, cleanup_s = asyncio.run(during(url, emails, cleanup))
    finally:
        processes.stop_all()
    left = asyncio.run(_count(dsn))
    subprocess.run(["dropdb", "-h", "127.0.0.1", "--if-exists", "--force", database], check=False)

    day = datetime.now(UTC).strftime("%Y-%m-%d")
    rows = [
        f"### Database growth, {day} ({args.users:,} users, {total:,} refresh tokens)",
        "",
        "| measure | value |",
        "|---|---|",
        f"| cleanup-tokens, {total - left:,} expired tokens in chains of {CHAIN} | {cleanup_s:.1f} s |",
        f"| login/refresh p50 alone / during cleanup | {p(before, 0.5):.0f} / {p(while_cleaning, 0.5):.0f} ms |",
        f"| login/refresh p99 alone / during cleanup | {p(before, 0.99):.0f} / {p(while_cleaning, 0.99):.0f} ms |",
        *(f"| admin search `q={term}` (median of 7) | {ms:.1f} ms |" for term, ms in searches.items()),
        "",
    ]
    table = "\n".join(rows)
    print(table)
    if not args.no_append:
        with open(ROOT / "BENCHMARKS.md", "a", encoding="utf-8") as out:
            out.write("\n" + table)
    return 0


async def _count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM tokens")
    finally:
        await conn.close()


if __name__ == "__main__":
    sys.exit(main())
