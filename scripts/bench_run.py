"""scripts/bench: measure the hot path, logins and scaling against the targets in docs/architecture.md.

One run, on this machine: a private Redis (so command counts are ours alone), a fresh
PostgreSQL database, the real `manas360 serve` with the configured workers and rate limits
raised so they count but never block, the bare Sanic baseline with the same workers, and
wrk on loopback as the load generator. Results are printed and appended to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from scripts.bench_procs import (
    Watched,
    mean_cores,
    postgres_backends,
    redis_cli,
    redis_info,
    run_watched,
    service_processes,
)

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SYNTHETIC_PASSWORD = "manas360-load-test"
UNLIMITED = "1000000000/60"

GATED_LUA = """
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do tokens[#tokens + 1] = line end
local i = 1
-- Each thread (and each run) starts at its own place in the list: wrk's Lua is seeded the
-- same in every thread, which would have them all present the same tokens in step.
function init(args)
  local address = tonumber(tostring({}):match("0x(%x+)") or "0", 16)
  math.randomseed(os.time() + address % 1000003)
  i = math.random(#tokens)
end
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", nil, {["Authorization"] = "Bearer " .. tokens[i]})
end
"""
LOGIN_LUA = """
local emails = {}
for line in io.lines(os.getenv("BENCH_EMAILS")) do emails[#emails + 1] = line end
local i = math.random(#emails)
request = function()
  i = i % #emails + 1
  return wrk.format("POST", "/api/v1/auth/login", {["Content-Type"] = "application/json"},
    '{"email":"' .. emails[i] .. '","password":"PASSWORD"}')
end
""".replace("PASSWORD", SYNTHETIC_PASSWORD)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class Processes:
    """Everything this run starts, stopped at the end whatever happens."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen] = []

    def start(self, command: list[str], *, env: dict[str, str], log_path: Path) -> subprocess.Popen:
        with open(log_path, "wb") as out:
            process = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
            )
        self.running.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.running):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.running:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def start_bare(procs: Processes, *, env: dict[str, str], port: int, workers: int, log_path: Path) -> str:
    """The baseline: bare Sanic's JSON endpoint (scripts/bench_bare.py) with `workers`; its URL."""
    procs.start(
        [
            PY,
            "-m",
            "sanic",
            "scripts.bench_bare:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-logs",
            "--no-motd",
        ],
        env=env,
        log_path=log_path,
    )
    return f"http://127.0.0.1:{port}/"


def cpu_model() -> str:
    """The CPU's model name, for the heading of a results table."""
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    return next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.processor()
    )


def publish(table: str, *, append: bool) -> None:
    """Print a results table and (unless --no-append) append it to BENCHMARKS.md."""
    print(table)
    if append:
        with open(ROOT / "BENCHMARKS.md", "a") as out:
            out.write("\n" + table + "\n")
        log("appended to BENCHMARKS.md")


def wait_http(url: str, *, log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"bench: {url} did not come up:\n{log_path.read_text(errors='replace')[-3000:]}")


def run_cli(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run([PY, "-m", "manas360.cli", *args], env=env, capture_output=True, text=True, cwd=ROOT)
    if result.returncode:
        raise SystemExit(f"bench: manas360 {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout.strip()


def wrk(
    url: str,
    *,
    seconds: int,
    connections: int,
    script: Path | None = None,
    env: dict[str, str] | None = None,
    watched: Watched | None = None,
) -> dict[str, Any]:
    """One wrk run (two threads, latency percentiles); with `watched`, the cores each watched
    role (and wrk) kept busy meanwhile, under "cpu"."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script:
        command[1:1] = ["-s", str(script)]
    out, cpu = run_watched(command, env=env or {}, watched=watched)
    return {
        **wrk_summary(out),
        "p50": _latency(out, "50%"),
        "p99": _latency(out, "99%"),
        **({"cpu": cpu} if watched else {}),
    }


def wrk_summary(out: str) -> dict[str, Any]:
    """Requests, req/s, non-2xx responses and socket errors from wrk's own summary."""
    requests = re.search(r"(\d+) requests in", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if requests is None or rps is None:
        raise SystemExit(f"bench: wrk printed no summary:\n{out[-2000:]}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(rps.group(1)),
        "requests": int(requests.group(1)),
        "non2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
    }


def _latency(out: str, label: str) -> float:
    value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


async def pg_counter(dsn: str, database: str) -> int:
    """Committed + rolled-back transactions of the database (each autocommit statement is one)."""
    conn = await asyncpg.connect(dsn)
    try:
        await asyncio.sleep(1.2)  # cumulative statistics are flushed at most once a second
        return await conn.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1", database
        )
    finally:
        await conn.close()


def redis_calls(port: int) -> tuple[int, int]:
    """(commands sent by clients, commands executed including those inside scripts).

    On a single node the hot path sends one EVALSHA and nothing else (the reference
    version is read inside the script since 2026-11-26; before, a GET beside it). Redis
    counts a script's own commands under their names too, so only EVALSHA/EVAL are counted
    as sent; runs before that date counted the GET as well (EVALSHA × 2 + GET = 3.00)."""
    stats = redis_cli(port, "info", "commandstats")
    calls = {name: int(n) for name, n in re.findall(r"cmdstat_(\w+):calls=(\d+)", stats)}
    sent = sum(calls.get(name, 0) for name in ("evalsha", "eval"))
    return sent, sum(calls.values())


def bcrypt_verify_s(cost: int) -> float:
    import bcrypt

    hashed = bcrypt.hashpw(b"x" * 44, bcrypt.gensalt(cost))
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        bcrypt.checkpw(b"x" * 44, hashed)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def log_in(url: str, emails: list[str]) -> list[str]:
    async def one(client, email):
        response = await client.post("/api/v1/auth/login", json={"email": email, "password": SYNTHETIC_PASSWORD})
        response.raise_for_status()
        return response.json()["access_token"]

    async def all_of_them():
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return await asyncio.gather(*(one(client, email) for email in emails))

    return asyncio.run(all_of_them())


def mint_tokens(env: dict[str, str], user_ids: list[str], *, aal: int = 1) -> list[str]:
    """Access tokens for `user_ids`, signed with the service's own key (JWT_SECRET of `env`),
    each with a session id of its own: what a population of logged-in users presents."""

    from manas360.services.auth.tokens import build_codec
    from manas360.settings import load_settings

    codec = build_codec(load_settings(env))
    now_ms = int(time.time() * 1000)
    return [
        codec.encode(
            user_id=user_id, session_id=str(uuid.uuid4()), now=now_ms / 1000, extra={"iat_ms": now_ms}, aal=aal
        )[0]
        for user_id in user_ids
    ]


def cache_counts(url: str) -> dict[str, float]:
    """Hits and misses of the verified-token cache and of the user contexts in Redis, over
    every worker, from /metrics ("token hit", "token miss", "context hit", "context miss"),
    and the verified tokens cached ("token entries")."""
    text = httpx.get(url + "/metrics", timeout=10).text
    counts = {}
    for name, metric in (("token", "manas360_token_cache_total"), ("context", "manas360_entitlement_cache_total")):
        found = dict(re.findall(rf'^{metric}\{{result="(hit|miss)"\}} ([\d.e+]+)$', text, re.M))
        counts[f"{name} hit"], counts[f"{name} miss"] = float(found.get("hit", 0)), float(found.get("miss", 0))
    entries = re.search(r"^manas360_token_cache_entries ([\d.e+]+)$", text, re.M)
    counts["token entries"] = float(entries.group(1)) if entries else 0.0
    return counts


def bench_env(*, base_url: str, database: str, redis_port: int, workers: int) -> dict[str, str]:
    """The environment of a benchmarked server: its own database and Redis, quiet logs, and
    limits no benchmark reaches (the limiter's cost is measured, its refusals are not). The
    mail sender polls hourly instead of every 2 s: its polls are no request's SQL, and the
    "SQL statements per gated request" row counts every transaction in the database."""
    return {
        **os.environ,
        "ENV": "development",
        "DATABASE_URL": f"{base_url}/{database}",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "REDIS_PREFIX": "bench:",
        "JWT_SECRET": secrets.token_urlsafe(48),
        "LOG_LEVEL": "WARNING",
        "LOG_JSON": "1",
        "WORKERS": str(workers),
        "PYTHONPATH": str(ROOT),
        "RATE_LIMIT_GLOBAL": UNLIMITED,
        "RATE_LIMIT_AUTH": UNLIMITED,
        "RATE_LIMIT_API": UNLIMITED,
        "MAIL_POLL_S": "3600",
    }


def start_redis(procs: Processes, *, port: int, tmp: Path, env: dict[str, str]) -> None:
    """A private, non-persistent redis-server on `port`, answering PING before this returns."""
    procs.start(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
        ],
        env=env,
        log_path=tmp / "redis.log",
    )
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode:
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--small-users", type=int, default=1_000)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternated bare/gated rounds")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "2")))
    parser.add_argument(
        "--populations",
        default="10000,100000",
        help="distinct users' tokens for the population runs (comma-separated; '' for none)",
    )
    parser.add_argument("--no-append", action="store_true", help="print, do not append to BENCHMARKS.md")
    args = parser.parse_args(argv)

    base_url = os.environ.get("TEST_DATABASE_URL", "postgres://root@127.0.0.1:5432")
    database = "manas360_bench"
    admin_dsn = base_url.replace("postgres://", "postgresql://", 1) + "/postgres"
    tmp = Path(tempfile.mkdtemp(prefix="manas360-bench-"))
    procs = Processes()
    redis_port, app_port, bare_port = free_port(), free_port(), free_port()
    env = {
        **bench_env(base_url=base_url, database=database, redis_port=redis_port, workers=args.workers),
        "PORT": str(app_port),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
        "METRICS_ALLOWED_CIDRS": "127.0.0.1/32",
    }
    cost = int(env.get("BCRYPT_COST", "12"))
    results: dict[str, object] = {}
    try:
        asyncio.run(_recreate(admin_dsn, database))
        start_redis(procs, port=redis_port, tmp=tmp, env=env)
        redis_pid = procs.running[-1].pid
        log("migrating and seeding")
        run_cli("migrate", env=env)
        run_cli("seed", env=env)
        run_cli("seed", "--users", str(args.small_users), env=env)
        serve = procs.start([PY, "-m", "manas360.cli", "serve"], env=env, log_path=tmp / "serve.log")
        bare_url = start_bare(procs, env=env, port=bare_port, workers=args.workers, log_path=tmp / "bare.log")
        app_url = f"http://127.0.0.1:{app_port}"
        wait_http(app_url + "/health/ready", log_path=tmp / "serve.log")
        wait_http(bare_url, log_path=tmp / "bare.log")
        time.sleep(1)  # every worker has started
        watched = Watched(service_processes(serve))
        watched.roles["redis"] = [redis_pid]

        emails = asyncio.run(_premium_emails(f"{base_url.replace('postgres://', 'postgresql://', 1)}/{database}"))
        log(f"logging in {len(emails)} premium users")
        tokens = log_in(app_url, emails)
        (tmp / "tokens").write_text("\n".join(tokens) + "\n")
        (tmp / "emails").write_text("\n".join(emails) + "\n")
        gated_lua, login_lua = tmp / "gated.lua", tmp / "login.lua"
        gated_lua.write_text(GATED_LUA)
        login_lua.write_text(LOGIN_LUA)
        gated_url = app_url + "/api/v1/premium/dashboard"
        lua_env = {"BENCH_TOKENS": str(tmp / "tokens"), "BENCH_EMAILS": str(tmp / "emails")}

        def gated(connections=args.connections, seconds=args.duration):
            return wrk(gated_url, seconds=seconds, connections=connections, script=gated_lua, env=lua_env)

        def bare(seconds=args.duration):
            # Driven by the same wrk script as the gated runs (bare ignores the header): wrk's
            # per-request Lua costs CPU on the cores the servers share, ~7 % of bare's req/s
            # measured here (2026-12-07), which a static bare request would not pay.
            return wrk(bare_url, seconds=seconds, connections=args.connections, script=gated_lua, env=lua_env)

        def against_bare(rounds: int = 2) -> dict[str, float]:
            # The two dataset sizes are measured minutes apart, and this host's speed drifts
            # by more than the 10 % the target allows: each gated run is paired with a bare
            # one, and the sizes are compared by their ratios to bare.
            pairs = [(bare()["rps"], gated()["rps"]) for _ in range(rounds)]
            return {"rps": statistics.median(g for _, g in pairs), "ratio": statistics.median(g / b for b, g in pairs)}

        log(f"warming {args.small_users} users; gated GET at {args.small_users} users")
        run_cli("warm-cache", env=env)
        gated(seconds=2)
        results["small"] = against_bare()

        log(f"seeding to {args.users} users and warming")
        run_cli("seed", "--users", str(args.users), env=env)
        redis_cli(redis_port, "flushdb")
        flushed = redis_info([redis_port], "memory", "used_memory")
        warm_started = time.monotonic()
        warm_out = run_cli("warm-cache", env=env)
        results["warm_s"] = time.monotonic() - warm_started
        warmed = int(re.search(r"warm-cache: (\d+) users", warm_out).group(1))
        results["redis_bytes_per_user"] = (redis_info([redis_port], "memory", "used_memory") - flushed) / warmed
        results["warmed"] = warmed
        gated(seconds=2)
        results["large"] = against_bare()

        log(f"gated vs bare, {args.rounds} alternated rounds of {args.duration}s, -c{args.connections}")
        bare_runs, gated_runs, live_runs, static_bare_runs = [], [], [], []
        pg_dsn = admin_dsn
        sql_before, redis_before = asyncio.run(pg_counter(pg_dsn, database)), redis_calls(redis_port)
        gated_requests = 0
        for _ in range(args.rounds):
            bare_runs.append(bare())
            run = gated()
            gated_runs.append(run)
            gated_requests += run["requests"]
        sql_after, redis_after = asyncio.run(pg_counter(pg_dsn, database)), redis_calls(redis_port)
        for _ in range(args.rounds):  # the middleware alone, against bare in the same rounds (static requests)
            static_bare_runs.append(wrk(bare_url, seconds=args.duration, connections=args.connections))
            live_runs.append(wrk(app_url + "/health/live", seconds=args.duration, connections=args.connections))
        results["bare"] = _median_run(bare_runs)
        results["gated"] = _median_run(gated_runs)
        results["live"] = _median_run(live_runs)
        results["bare_static"] = _median_run(static_bare_runs)
        results["non2xx"] = sum(r["non2xx"] + r["socket_errors"] for r in gated_runs)
        results["sql_per_request"] = (sql_after - sql_before) / gated_requests
        results["redis_sent"] = (redis_after[0] - redis_before[0]) / gated_requests
        results["redis_executed"] = (redis_after[1] - redis_before[1]) / gated_requests
        watched.roles["postgresql"] = postgres_backends(database)  # the pools' backends are open now
        results["populations"] = population_runs(
            args,
            env=env,
            tmp=tmp,
            app_url=app_url,
            bare_url=bare_url,
            admin_dsn=admin_dsn,
            database=database,
            watched=watched,
        )

        log("logins")
        results["verify_s"] = bcrypt_verify_s(cost)
        results["logins"] = wrk(
            app_url, seconds=args.duration, connections=8, script=login_lua, env=lua_env, watched=watched
        )
        log("gated GET alone and beside a login storm (-c32)")
        results["gated_c32"] = gated(connections=32)
        with tempfile.TemporaryFile() as sink:
            storm = subprocess.Popen(
                ["wrk", "-t1", "-c8", f"-d{args.duration + 2}s", "-s", str(login_lua), app_url],
                env={**os.environ, **lua_env},
                stdout=sink,
                stderr=sink,
            )
            time.sleep(1)
            results["gated_storm"] = gated(connections=32)
            storm.wait()
        results["rss"] = [mib for role, mib in watched.peak_rss_mib().items() if role.startswith("worker")]
    finally:
        procs.stop_all()
        asyncio.run(_drop(admin_dsn, database))
        shutil.rmtree(tmp, ignore_errors=True)

    publish(render(results, args=args, cost=cost), append=not args.no_append)
    return 0


POPULATION_LUA = GATED_LUA
WARM_LIMIT_S = 90
PREMIUM_ROUTE, MEMBER_ROUTE = "/api/v1/premium/dashboard", "/api/v1/dashboard"


def population_runs(
    args,
    *,
    env: dict[str, str],
    tmp: Path,
    app_url: str,
    bare_url: str,
    admin_dsn: str,
    database: str,
    watched: Watched,
) -> list[dict[str, object]]:
    """Each population: that many distinct users' tokens (minted with the service's key),
    cycled by wrk, alternated with bare round by round; the hit rates of the verified-token
    cache and of the user contexts in Redis (from /metrics), the SQL per request, and the
    cores each process kept busy.

    The premium-gated GET needs users whose plan has the feature: about 15% of synthetic
    users. A population larger than those is run on the permission-gated GET
    (`/api/v1/dashboard`, every member may), which takes the same path through the guard.

    A population that has been using the service has its users' contexts in Redis, for
    CONTEXT_TTL_S after each was loaded: the cache is warmed (`manas360 warm-cache`) before
    each population, and its runs (the warm-up below plus the rounds) end within that time.
    Without it, the 100,000-user run met contexts an earlier phase had loaded more than 300 s
    before, and measured PostgreSQL reloading each of them (1,903 req/s, 2026-12-07)."""
    sizes = [int(size) for size in args.populations.split(",") if size.strip()]
    database_dsn = f"{admin_dsn.rsplit('/', 1)[0]}/{database}"
    results = []
    for size in sizes:
        premium = asyncio.run(_user_ids(database_dsn, size, premium=True))
        route, ids = (
            (PREMIUM_ROUTE, premium)
            if len(premium) >= size
            else (MEMBER_ROUTE, asyncio.run(_user_ids(database_dsn, size, premium=False)))
        )
        log(f"population of {len(ids):,} users on {route}: minting tokens, warming, {args.rounds} alternated rounds")
        tokens_path = tmp / f"tokens-{size}"
        tokens_path.write_text("\n".join(mint_tokens(env, ids)) + "\n")
        script = tmp / "population.lua"
        script.write_text(POPULATION_LUA)
        lua_env = {"BENCH_TOKENS": str(tokens_path)}
        run_cli("warm-cache", env=env)
        # A real population's tokens were seen before: warm until (nearly) every worker's cache
        # holds them all, or for at most WARM_LIMIT_S (the hit rate then says how far it got).
        warm_until = time.monotonic() + WARM_LIMIT_S
        while time.monotonic() < warm_until:
            before = cache_counts(app_url)
            wrk(app_url + route, seconds=4, connections=args.connections, script=script, env=lua_env)
            time.sleep(1.2)  # every worker publishes its counts within a second
            after = cache_counts(app_url)
            hits, misses = after["token hit"] - before["token hit"], after["token miss"] - before["token miss"]
            if misses <= 0.01 * (hits + misses):
                break
        bare_runs, runs = [], []
        counts_before = cache_counts(app_url)
        sql_before = asyncio.run(pg_counter(admin_dsn, database))
        for _ in range(args.rounds):
            bare_runs.append(
                wrk(bare_url, seconds=args.duration, connections=args.connections, script=script, env=lua_env)
            )
            runs.append(
                wrk(
                    app_url + route,
                    seconds=args.duration,
                    connections=args.connections,
                    script=script,
                    env=lua_env,
                    watched=watched,
                )
            )
        sql_after = asyncio.run(pg_counter(admin_dsn, database))  # waits past the metrics' publishing second too
        counts = {name: value - counts_before[name] for name, value in cache_counts(app_url).items()}
        requests = sum(run["requests"] for run in runs)
        results.append(
            {
                "size": len(ids),
                "route": route,
                "bare": _median_run(bare_runs),
                "run": _median_run(runs),
                "errors": sum(run["non2xx"] + run["socket_errors"] for run in runs),
                "token_hit_rate": _rate(counts["token hit"], counts["token miss"]),
                "context_hit_rate": _rate(counts["context hit"], counts["context miss"]),
                "sql_per_request": (sql_after - sql_before) / max(requests, 1),
                "cpu": mean_cores(runs),
            }
        )
    return results


def _rate(hits: float, misses: float) -> float:
    return hits / (hits + misses) if hits + misses else 0.0


async def _user_ids(dsn: str, limit: int, *, premium: bool) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        if premium:
            rows = await conn.fetch(
                "SELECT u.id FROM user_accounts u JOIN user_subscriptions s ON s.user_id = u.id "
                "JOIN subscription_plans p ON p.id = s.plan_id WHERE s.status = 'active' AND p.tier >= 2 "
                "AND (s.ends_at IS NULL OR s.ends_at > now() + interval '1 hour') AND u.status = 'active' "
                "AND u.deleted_at IS NULL ORDER BY u.email LIMIT $1",
                limit,
            )
        else:
            rows = await conn.fetch(
                "SELECT id FROM user_accounts WHERE status = 'active' AND deleted_at IS NULL ORDER BY email LIMIT $1",
                limit,
            )
        return [str(row["id"]) for row in rows]
    finally:
        await conn.close()


def _median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in ("rps", "p50", "p99")}


async def _premium_emails(dsn: str, limit: int = 64) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT u.email FROM user_accounts u JOIN user_subscriptions s ON s.user_id = u.id "
            "JOIN subscription_plans p ON p.id = s.plan_id WHERE s.status = 'active' AND p.tier >= 2 "
            "AND (s.ends_at IS NULL OR s.ends_at > now() + interval '1 hour') ORDER BY u.email LIMIT $1",
            limit,
        )
        return [row["email"] for row in rows]
    finally:
        await conn.close()


async def _recreate(admin_dsn: str, database: str) -> None:
    await _drop(admin_dsn, database)


async def _drop(admin_dsn: str, database: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await conn.close()


def _population_rows(pop: dict) -> list[tuple[str, str]]:
    run, bare = pop["run"], pop["bare"]
    per_request = {role: 1e6 * cores / run["rps"] for role, cores in pop["cpu"].items()}
    return [
        (
            f"{pop['size']:,} distinct users' tokens, {pop['route']}: req/s · p99 · ratio to bare (same rounds) "
            "· p99 ratio",
            f"{run['rps']:,.0f} · {run['p99']:.2f} ms · **{run['rps'] / bare['rps']:.2f}** · "
            f"**{run['p99'] / bare['p99']:.2f}**" + (f" ({pop['errors']} errors)" if pop["errors"] else ""),
        ),
        (
            f"… {pop['size']:,} users: hit rates (verified-token cache · user context in Redis) · SQL per request",
            f"{pop['token_hit_rate']:.1%} · {pop['context_hit_rate']:.1%} · {pop['sql_per_request']:.4f}",
        ),
        (
            f"… {pop['size']:,} users: CPU per request (µs) · cores busy",
            ", ".join(f"{role} {us:.0f}" for role, us in per_request.items() if us >= 0.5) + f" · {_cores(pop['cpu'])}",
        ),
    ]


def _cores(cpu: dict[str, float]) -> str:
    """Cores busy in all and by role (roles under 0.005 left out)."""
    busy = ", ".join(f"{role} {cores:.2f}" for role, cores in cpu.items() if cores >= 0.005)
    return f"{sum(cpu.values()):.2f} ({busy})"


def render(r: dict, *, args, cost: int) -> str:
    bare, gated = r["bare"], r["gated"]
    cpu = cpu_model()
    cores = os.cpu_count() or 1
    bound = cores / r["verify_s"]
    logins = r["logins"]["rps"]
    rows = [
        (
            "bare Sanic JSON (driven by the gated runs' wrk script), req/s · p50 · p99",
            f"{bare['rps']:,.0f} · {bare['p50']:.2f} ms · {bare['p99']:.2f} ms",
        ),
        (
            "gated GET /api/v1/premium/dashboard, req/s · p50 · p99",
            f"{gated['rps']:,.0f} · {gated['p50']:.2f} ms · {gated['p99']:.2f} ms",
        ),
        (
            "gated / bare: req/s ratio · p99 ratio",
            f"**{gated['rps'] / bare['rps']:.2f}** · **{gated['p99'] / bare['p99']:.2f}**",
        ),
        ("gated non-2xx or socket errors", f"{r['non2xx']}"),
        (
            "middleware only: /health/live req/s · its ratio to bare (both static requests)",
            f"{r['live']['rps']:,.0f} · **{r['live']['rps'] / r['bare_static']['rps']:.2f}**",
        ),
        *[row for pop in r["populations"] for row in _population_rows(pop)],
        ("SQL statements per gated request", f"{r['sql_per_request']:.4f}"),
        (
            "Redis commands per gated request: sent by the service (EVALSHA) · executed incl. inside scripts",
            f"{r['redis_sent']:.2f} · {r['redis_executed']:.2f}",
        ),
        (
            f"logins/s (BCRYPT_COST={cost}, wrk -c8) vs bound {cores} cores / {r['verify_s'] * 1000:.0f} ms verify",
            f"{logins:.1f} vs {bound:.1f} = **{logins / bound:.0%}**; cores busy: {_cores(r['logins']['cpu'])}",
        ),
        (
            "gated p99 alone · beside a login storm (-c32)",
            f"{r['gated_c32']['p99']:.2f} ms · {r['gated_storm']['p99']:.2f} ms "
            f"({r['gated_storm']['rps']:,.0f} req/s beside the storm)",
        ),
        (
            f"gated req/s at {args.small_users:,} · at {args.users:,} users",
            f"{r['small']['rps']:,.0f} · {r['large']['rps']:,.0f}; ratio to bare (paired rounds) "
            f"{r['small']['ratio']:.2f} · {r['large']['ratio']:.2f} "
            f"({r['large']['ratio'] / r['small']['ratio'] - 1:+.0%})",
        ),
        (
            f"warm-cache of {r['warmed']:,} users · Redis memory per warmed user",
            f"{r['warm_s']:.1f} s · {r['redis_bytes_per_user']:.0f} bytes",
        ),
        ("peak RSS per worker", " · ".join(f"{mib:.0f} MiB" for mib in r["rss"])),
    ]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = (
        f"### {now} — {cores} cores ({cpu}), Python {platform.python_version()}, "
        f"{args.workers} workers, wrk -t2 -c{args.connections}, {args.rounds}×{args.duration}s rounds\n\n"
        "| measure | result |\n|---|---|\n"
    )
    return head + "\n".join(f"| {name} | {value} |" for name, value in rows)


if __name__ == "__main__":
    sys.exit(main())
