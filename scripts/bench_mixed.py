"""scripts/bench --mixed: a realistic mix over a seeded population, ramped, with the seed's load-test columns.

One run, on this machine: a fresh PostgreSQL database seeded with `--users` synthetic users
(`manas360 seed --users`, every plan represented) and warmed (`manas360 warm-cache`), a
private Redis (or, with `--cluster`, a private three-master Redis Cluster), the real
`manas360 serve` with the configured workers and rate limits raised so they count but never
block, and wrk on loopback driving a mix of requests (MIX below) from every user's token:

- each wrk thread holds one connection, so a response is the answer to the request that
  thread sent last: a refresh's new refresh token replaces the one it spent (rotation, as a
  client does), and every answer is counted per kind;
- the access tokens are minted for every user with the service's key (what a logged-in
  population presents); the refresh tokens belong to real sessions opened through the
  service's own gate in-process (logging 100,000 users in with bcrypt would take hours),
  fresh ones for every wrk run;
- the load ramps up (`--ramp` connection counts, `--stage` seconds each), then holds the
  last for `--steady` seconds: the measured phase. A `--soak MINUTES` run holds it that long
  with `manas360 maintenance all` running every minute beside it and samples every worker's
  RSS (the slope is reported) and Redis's key count.

Reported, like the seed's table: average, p95 and p99 latency, error rate, req/s, SQL
statements per request (transactions of the database / requests), CPU and RSS of every
process (workers, Sanic's main process, each Redis node, PostgreSQL's backends, wrk itself),
Redis and PostgreSQL memory at the end; then refresh and login throughput per busy core, each
measured alone. Printed and appended to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from scripts.bench_procs import (
    Watched,
    postgres_backends,
    redis_info,
    redis_keys,
    run_watched,
    service_processes,
    slope_per_min,
)
from scripts.bench_run import (
    PY,
    SYNTHETIC_PASSWORD,
    Processes,
    _drop,
    bench_env,
    cache_counts,
    cpu_model,
    free_port,
    log,
    mint_tokens,
    pg_counter,
    publish,
    run_cli,
    start_redis,
    wait_http,
    wrk_summary,
)

MIX = (
    # kind, share of requests, what a client of the platform does
    ("gated", 0.40, "GET /api/v1/premium/dashboard (premium users) or /api/v1/dashboard"),
    ("me", 0.32, "GET /api/v1/me"),
    ("plans", 0.10, "GET /api/v1/plans (public)"),
    ("sessions", 0.03, "GET /api/v1/auth/sessions"),
    ("refresh", 0.12, "POST /api/v1/auth/refresh (rotation)"),
    ("admin", 0.0295, "GET /api/v1/admin/users?limit=20&q=<5 characters of an address> (superadmin)"),
    ("login", 0.0005, "POST /api/v1/auth/login (bcrypt at BCRYPT_COST)"),
)
KINDS = [kind for kind, _, _ in MIX]

MIXED_LUA = r"""
-- One connection per thread: response() answers the request this thread sent last.
local access, premium, refresh, emails = {}, {}, {}, {}
local admin = ""
local last = ""
local function lines(path, into)
  for line in io.lines(path) do into[#into + 1] = line end
end
local threads = tonumber(os.getenv("BENCH_THREADS"))
local counter = 0
local all_threads = {}
function setup(thread)  -- in wrk's main state, once per thread before any starts
  counter = counter + 1
  thread:set("thread_id", counter)  -- a global of that thread's own state
  all_threads[#all_threads + 1] = thread
end
KINDS
function init(args)
  thread_id = thread_id or 1
  local address = tonumber(tostring({}):match("0x(%x+)") or "0", 16)
  math.randomseed(os.time() + address % 1000003)
  lines(os.getenv("BENCH_ACCESS"), access)
  lines(os.getenv("BENCH_PREMIUM"), premium)
  lines(os.getenv("BENCH_EMAILS"), emails)
  local all = {}
  lines(os.getenv("BENCH_REFRESH"), all)
  for i = thread_id, #all, threads do refresh[#refresh + 1] = all[i] end  -- this thread's own
  for line in io.lines(os.getenv("BENCH_ADMIN")) do admin = line end
  for _, kind in ipairs(kinds) do _G["n_" .. kind] = 0; _G["e_" .. kind] = 0 end
end
local slot = 0
local only = os.getenv("BENCH_ONLY")
local function pick()
  if only and only ~= "" then return only end
  local r, acc = math.random(), 0
  for i, kind in ipairs(kinds) do
    acc = acc + shares[i]
    if r < acc then return kind end
  end
  return kinds[1]
end
local function bearer(token) return {["Authorization"] = "Bearer " .. token} end
request = function()
  last = pick()
  if last == "gated" then
    if math.random() < 0.5 then
      return wrk.format("GET", "/api/v1/premium/dashboard", bearer(premium[math.random(#premium)]))
    end
    return wrk.format("GET", "/api/v1/dashboard", bearer(access[math.random(#access)]))
  elseif last == "me" then
    return wrk.format("GET", "/api/v1/me", bearer(access[math.random(#access)]))
  elseif last == "plans" then
    return wrk.format("GET", "/api/v1/plans")
  elseif last == "sessions" then
    return wrk.format("GET", "/api/v1/auth/sessions", bearer(access[math.random(#access)]))
  elseif last == "refresh" and #refresh > 0 then
    slot = slot % #refresh + 1
    return wrk.format("POST", "/api/v1/auth/refresh", {["Content-Type"] = "application/json"},
      '{"refresh_token":"' .. refresh[slot] .. '"}')
  elseif last == "admin" then
    -- an administrator looks someone up: five characters of a real address
    local email = emails[math.random(#emails)]
    local at = math.random(math.max(1, email:find("@") - 5))
    return wrk.format("GET", "/api/v1/admin/users?limit=20&q=" .. email:sub(at, at + 4), bearer(admin))
  elseif last == "login" then
    return wrk.format("POST", "/api/v1/auth/login", {["Content-Type"] = "application/json"},
      '{"email":"' .. emails[math.random(#emails)] .. '","password":"PASSWORD"}')
  end
  last = "plans"
  return wrk.format("GET", "/api/v1/plans")
end
response = function(status, headers, body)
  _G["n_" .. last] = _G["n_" .. last] + 1
  if status >= 400 then
    _G["e_" .. last] = _G["e_" .. last] + 1
    if not _G["s_" .. last] then _G["s_" .. last] = status .. " " .. body:sub(1, 100):gsub("\n", " ") end
  end
  if last == "refresh" and status == 200 then
    local new = body:match('"refresh_token"%s*:%s*"([^"]+)"')
    if new then refresh[slot] = new end
  end
end
done = function(summary, latency, requests)
  local s = summary.errors
  io.write(string.format("MIXED total %d %d %.0f %.3f %.3f %.3f %.3f %d\n", summary.requests, summary.duration,
    latency.mean, latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
    s.connect + s.read + s.write + s.timeout))
  for _, kind in ipairs(kinds) do
    local n, e = 0, 0
    for _, thread in ipairs(all_threads) do
      n = n + thread:get("n_" .. kind); e = e + thread:get("e_" .. kind)
    end
    io.write(string.format("MIXED kind %s %d %d\n", kind, n, e))
    for _, thread in ipairs(all_threads) do
      local sample = thread:get("s_" .. kind)
      if sample then io.write(string.format("MIXED sample %s %s\n", kind, sample)); break end
    end
  end
end
""".replace("PASSWORD", SYNTHETIC_PASSWORD).replace(
    "KINDS",
    "kinds = {"
    + ", ".join(f'"{k}"' for k in KINDS)
    + "}\nshares = {"
    + ", ".join(str(share) for _, share, _ in MIX)
    + "}",
)

SINGLE_LUA = r"""
-- One kind alone (refresh or login), one connection per thread, for per-core throughput.
local items, slot, threads = {}, 0, tonumber(os.getenv("BENCH_THREADS"))
local counter = 0
function setup(thread) counter = counter + 1; thread:set("thread_id", counter) end
function init(args)
  thread_id = thread_id or 1
  local all = {}
  for line in io.lines(os.getenv("BENCH_ITEMS")) do all[#all + 1] = line end
  for i = thread_id, #all, threads do items[#items + 1] = all[i] end
end
request = function()
  slot = slot % #items + 1
  if os.getenv("BENCH_KIND") == "login" then
    return wrk.format("POST", "/api/v1/auth/login", {["Content-Type"] = "application/json"},
      '{"email":"' .. items[slot] .. '","password":"PASSWORD"}')
  end
  return wrk.format("POST", "/api/v1/auth/refresh", {["Content-Type"] = "application/json"},
    '{"refresh_token":"' .. items[slot] .. '"}')
end
response = function(status, headers, body)
  if status == 200 and os.getenv("BENCH_KIND") ~= "login" then
    local new = body:match('"refresh_token"%s*:%s*"([^"]+)"')
    if new then items[slot] = new end
  end
end
""".replace("PASSWORD", SYNTHETIC_PASSWORD)


# --- the population --------------------------------------------------------------------------


async def _population(dsn: str) -> tuple[list[str], list[str], list[str], str]:
    """Every user id; the premium ones; some emails; the superadmin's id."""
    conn = await asyncpg.connect(dsn)
    try:
        users = [str(row["id"]) for row in await conn.fetch("SELECT id FROM user_accounts ORDER BY id")]
        premium = [
            str(row["id"])
            for row in await conn.fetch(
                "SELECT u.id FROM user_accounts u JOIN user_subscriptions s ON s.user_id = u.id "
                "JOIN subscription_plans p ON p.id = s.plan_id WHERE s.status = 'active' AND p.tier >= 2 "
                "AND (s.ends_at IS NULL OR s.ends_at > now() + interval '1 hour')"
            )
        ]
        emails = [row["email"] for row in await conn.fetch("SELECT email FROM user_accounts ORDER BY id LIMIT 2000")]
        admin = await conn.fetchval(
            "SELECT u.id FROM user_accounts u JOIN roles r ON r.id = u.role_id WHERE r.name = 'superadmin' LIMIT 1"
        )
        return users, premium, emails, str(admin)
    finally:
        await conn.close()


async def _open_sessions(env: dict[str, str], user_ids: list[str]) -> list[str]:
    """Real sessions (one per user) opened through the gate's own session step; their refresh tokens."""
    from manas360.clock import db_now
    from manas360.db import orm
    from manas360.services.auth import gate
    from manas360.services.auth.sessions import Client
    from manas360.settings import load_settings

    settings = load_settings(env)
    client = Client(ip="127.0.0.1", user_agent="bench", source="127.0.0.1")
    tokens = []
    async with orm(settings) as db:
        for start in range(0, len(user_ids), 500):
            async with db.transaction() as conn:
                now = await db_now(conn)
                for user_id in user_ids[start : start + 500]:
                    _, refresh_token, _ = await gate.open_session(
                        conn,
                        settings=settings,
                        user_id=user_id,
                        client=client,
                        flow=gate.Flow.LOGIN,
                        proof=gate.PASSWORD,
                        now=now,
                    )
                    tokens.append(refresh_token)
    return tokens


# --- running wrk -----------------------------------------------------------------------------


def _wrk(
    url: str, *, seconds: int, connections: int, script: Path, env: dict[str, str], watched: Watched | None = None
) -> dict[str, object]:
    """One wrk run (threads = connections); its MIXED lines parsed, and the cores each watched
    role kept busy meanwhile (wrk's own included)."""
    command = ["wrk", f"-t{connections}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script)]
    out, cpu = run_watched([*command, url], env={**env, "BENCH_THREADS": str(connections)}, watched=watched)
    result: dict[str, object] = {"out": out, **({"cpu": cpu} if watched else {})}
    report = _mixed_report(out)
    return {**result, **(report if report else wrk_summary(out))}  # wrk's own summary without MIXED lines


def _mixed_report(out: str) -> dict[str, Any]:
    """What MIXED_LUA's done() printed: totals, latency percentiles, counts per kind (empty
    when the script printed none)."""
    total = re.search(r"MIXED total (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+) (\d+)", out)
    if total is None:
        return {}
    requests, duration_us, mean, p50, p95, p99, top, socket_errors = total.groups()
    return {
        "requests": int(requests),
        "rps": int(requests) / (int(duration_us) / 1e6),
        "avg_ms": float(mean) / 1000,
        "p50_ms": float(p50) / 1000,
        "p95_ms": float(p95) / 1000,
        "p99_ms": float(p99) / 1000,
        "max_ms": float(top) / 1000,
        "socket_errors": int(socket_errors),
        "kinds": {kind: (int(n), int(e)) for kind, n, e in re.findall(r"MIXED kind (\w+) (\d+) (\d+)", out)},
        "samples": dict(re.findall(r"MIXED sample (\w+) (.*)", out)),
    }


# --- the run ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench --mixed", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--sessions", type=int, default=5_000, help="real sessions whose refresh tokens rotate")
    parser.add_argument("--ramp", default="8,16,32", help="connection counts of the ramp's stages")
    parser.add_argument("--stage", type=int, default=15, help="seconds per ramp stage")
    parser.add_argument("--connections", type=int, default=64, help="connections of the measured phase")
    parser.add_argument("--steady", type=int, default=120, help="seconds of the measured phase")
    parser.add_argument("--soak", type=float, default=0, help="minutes: hold the mix with maintenance beside it")
    parser.add_argument(
        "--soak-segment", type=int, default=SOAK_SEGMENT_S, help="seconds per soak run of wrk (fresh tokens each)"
    )
    parser.add_argument("--alone", type=int, default=10, help="seconds of the refresh-only and login-only runs")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "2")))
    parser.add_argument("--cluster", action="store_true", help="on a private three-master Redis Cluster")
    parser.add_argument("--no-append", action="store_true", help="print, do not append to BENCHMARKS.md")
    args = parser.parse_args(argv)

    base_url = os.environ.get("TEST_DATABASE_URL", "postgres://root@127.0.0.1:5432")
    database = "manas360_bench_mixed"
    admin_dsn = base_url.replace("postgres://", "postgresql://", 1) + "/postgres"
    dsn = f"{base_url.replace('postgres://', 'postgresql://', 1)}/{database}"
    tmp = Path(tempfile.mkdtemp(prefix="manas360-bench-mixed-"))
    procs = Processes()
    redis_port, app_port = free_port(), free_port()
    env = {
        **bench_env(base_url=base_url, database=database, redis_port=redis_port, workers=args.workers),
        "PORT": str(app_port),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
        "METRICS_ALLOWED_CIDRS": "127.0.0.1/32",
    }
    results: dict[str, object] = {"load_before": os.getloadavg()}
    with ExitStack() as stack:
        try:
            asyncio.run(_drop(admin_dsn, database))
            redis_password = None
            if args.cluster:
                from tests.fixtures.redis_cluster import start_redis_cluster

                cluster = stack.enter_context(start_redis_cluster())
                env["REDIS_URL"], redis_ports, redis_password = cluster.url, cluster.ports, cluster.password
                redis_pids = [process.pid for process in cluster.processes]
            else:
                start_redis(procs, port=redis_port, tmp=tmp, env=env)
                redis_ports, redis_pids = [redis_port], [procs.running[-1].pid]
            log(f"migrating, seeding {args.users:,} users, warming")
            run_cli("migrate", env=env)
            run_cli(
                "seed",
                env={**env, "SUPERADMIN_EMAIL": "root@bench.example", "SUPERADMIN_PASSWORD": secrets.token_urlsafe(18)},
            )
            seeded_started = time.monotonic()
            run_cli("seed", "--users", str(args.users), env=env)
            results["seed_s"] = time.monotonic() - seeded_started
            run_cli("warm-cache", env=env)
            users, premium, emails, admin_id = asyncio.run(_population(dsn))
            log(f"{len(users):,} users ({len(premium):,} premium): minting tokens, opening {args.sessions:,} sessions")

            def access_tokens(tag: str) -> dict[str, str]:
                """Files of access tokens minted now for every user and the admin (they live
                JWT_ACCESS_TTL, 15 minutes by default, as a client's do before it refreshes)."""
                files = {
                    "BENCH_ACCESS": "\n".join(mint_tokens(env, users)),
                    "BENCH_PREMIUM": "\n".join(mint_tokens(env, premium)),
                    "BENCH_ADMIN": mint_tokens(env, [admin_id], aal=2)[0],
                }
                paths = {name: tmp / f"{name.lower()}-{tag}" for name in files}
                for name, text in files.items():
                    paths[name].write_text(text + "\n")
                return {name: str(path) for name, path in paths.items()}

            (tmp / "emails").write_text("\n".join(emails) + "\n")
            lua_env = {**access_tokens("start"), "BENCH_EMAILS": str(tmp / "emails")}
            mixed = tmp / "mixed.lua"
            mixed.write_text(MIXED_LUA)
            opened = [0]

            def fresh(count: int) -> dict[str, str]:
                """lua_env with refresh tokens of `count` sessions never rotated yet: every wrk
                run starts from its own (a run that started from tokens the last one rotated
                would present spent tokens: reuse, the session revoked)."""
                start = opened[0] % len(users)
                opened[0] += count
                chosen = (users[start:] + users[:start])[:count]
                path = tmp / f"refresh-{opened[0]}"
                path.write_text("\n".join(asyncio.run(_open_sessions(env, chosen))) + "\n")
                return {**lua_env, "BENCH_REFRESH": str(path)}

            serve = procs.start([PY, "-m", "manas360.cli", "serve"], env=env, log_path=tmp / "serve.log")
            url = f"http://127.0.0.1:{app_port}"
            wait_http(url + "/health/ready", log_path=tmp / "serve.log")
            time.sleep(1)  # every worker has started
            watched = Watched(service_processes(serve))
            for number, pid in enumerate(redis_pids, 1):
                watched.roles[f"redis {number}" if len(redis_pids) > 1 else "redis"] = [pid]
            watched.roles["postgresql"] = postgres_backends(database)

            stages = []
            for connections in (int(c) for c in args.ramp.split(",") if c.strip()):
                log(f"ramp: {connections} connections for {args.stage}s")
                stages.append(
                    (
                        connections,
                        _wrk(url, seconds=args.stage, connections=connections, script=mixed, env=fresh(1_000)),
                    )
                )
            results["stages"] = stages
            watched.roles["postgresql"] = postgres_backends(database)  # the pool's backends are open now
            log(f"measured phase: {args.connections} connections for {args.steady}s")
            steady_env = fresh(args.sessions)
            sql_before = asyncio.run(pg_counter(admin_dsn, database))
            steady = _wrk(
                url, seconds=args.steady, connections=args.connections, script=mixed, env=steady_env, watched=watched
            )
            sql_after = asyncio.run(pg_counter(admin_dsn, database))
            steady["sql_per_request"] = (sql_after - sql_before) / max(int(steady["requests"]), 1)
            steady["rss"] = watched.rss_mib()
            results["steady"] = steady
            sql_by_kind = {}
            for kind in KINDS:
                if kind == "login":
                    continue
                before = asyncio.run(pg_counter(admin_dsn, database))
                alone = _wrk(url, seconds=3, connections=8, script=mixed, env={**fresh(500), "BENCH_ONLY": kind})
                after = asyncio.run(pg_counter(admin_dsn, database))
                sql_by_kind[kind] = (after - before) / max(int(alone["requests"]), 1)
            results["sql_by_kind"] = sql_by_kind
            results["redis_memory"] = redis_info(redis_ports, "memory", "used_memory", password=redis_password)
            results["redis_keys"] = redis_keys(redis_ports, password=redis_password)
            results["pg_size"] = asyncio.run(_pg_size(admin_dsn, database))

            if args.soak:
                segments = itertools.count(1)
                results["soak"] = _soak(
                    args,
                    url=url,
                    mixed=mixed,
                    next_env=lambda: {**fresh(args.sessions), **access_tokens(f"soak{next(segments)}")},
                    env=env,
                    watched=watched,
                    redis=(redis_ports, redis_password),
                    admin_dsn=admin_dsn,
                    database=database,
                )

            log("refresh alone, then login alone, for per-core throughput")
            refresh_file = fresh(2_000)["BENCH_REFRESH"]
            single = tmp / "single.lua"
            single.write_text(SINGLE_LUA)
            results["refresh_alone"] = _wrk(
                url,
                seconds=args.alone,
                connections=16,
                script=single,
                watched=watched,
                env={"BENCH_ITEMS": refresh_file, "BENCH_KIND": "refresh"},
            )
            results["login_alone"] = _wrk(
                url,
                seconds=args.alone,
                connections=8,
                script=single,
                watched=watched,
                env={"BENCH_ITEMS": lua_env["BENCH_EMAILS"], "BENCH_KIND": "login"},
            )
            results["load_after"] = os.getloadavg()
        finally:
            procs.stop_all()
            asyncio.run(_drop(admin_dsn, database))
            shutil.rmtree(tmp, ignore_errors=True)

    publish(render(results, args=args), append=not args.no_append)
    return 0


async def _pg_size(admin_dsn: str, database: str) -> int:
    conn = await asyncpg.connect(admin_dsn)
    try:
        return int(await conn.fetchval("SELECT pg_database_size($1)", database))
    finally:
        await conn.close()


SOAK_SEGMENT_S = 600
"""A soak runs as wrk runs of at most this long, each with access tokens and sessions minted
just before it: shorter than an access token's 15 minutes, as clients refresh (the first soak
of 30 minutes kept its tokens past their expiry and measured 401s)."""


def _soak(
    args,
    *,
    url: str,
    mixed: Path,
    next_env: Callable[[], dict[str, str]],
    env: dict[str, str],
    watched: Watched,
    redis: tuple[list[int], str | None],
    admin_dsn: str,
    database: str,
) -> dict:
    """The mix held for --soak minutes (in segments of SOAK_SEGMENT_S, each with fresh tokens
    from `next_env`), `manas360 maintenance all` every minute beside it; RSS of every worker,
    Redis's key count and the verified-token cache's size sampled every 30 s; SQL per request
    and the user contexts' hit rate over the whole soak."""
    seconds = int(args.soak * 60)
    log(f"soak: {args.connections} connections for {seconds}s, maintenance every 60 s")
    ports, password = redis
    keys_before = redis_keys(ports, password=password)
    sql_before, counts_before = asyncio.run(pg_counter(admin_dsn, database)), cache_counts(url)
    started = time.monotonic()
    samples: dict[str, list[tuple[float, float]]] = {}
    maintenance_runs, maintenance_failures, next_maintenance = 0, 0, started + 30
    keys = [(0.0, float(keys_before))]
    reports = []
    while (left := seconds - (time.monotonic() - started)) > 1:
        segment = int(min(left, args.soak_segment))
        command = ["wrk", f"-t{args.connections}", f"-c{args.connections}", f"-d{segment}s", "--timeout", "10s"]
        load = subprocess.Popen(
            [*command, "-s", str(mixed), url],
            env={**os.environ, **next_env(), "BENCH_THREADS": str(args.connections)},
            stdout=subprocess.PIPE,
            text=True,
        )
        while load.poll() is None:
            now = time.monotonic() - started
            for role, mib in watched.rss_mib().items():
                if role.startswith("worker"):
                    samples.setdefault(role, []).append((now, mib))
            samples.setdefault("token cache entries", []).append((now, cache_counts(url)["token entries"]))
            keys.append((now, float(redis_keys(ports, password=password))))
            if time.monotonic() >= next_maintenance:
                done = subprocess.run([PY, "-m", "manas360.cli", "maintenance", "all"], env=env, capture_output=True)
                maintenance_runs += 1
                maintenance_failures += done.returncode != 0
                next_maintenance += 60
            while load.poll() is None and time.monotonic() - started - now < 30:
                time.sleep(0.5)
        out = load.stdout.read() if load.stdout else ""
        report = _mixed_report(out)
        if not report:
            raise SystemExit(f"bench: a soak run of wrk printed no report:\n{out[-2000:]}")
        reports.append(report)
    sql_after = asyncio.run(pg_counter(admin_dsn, database))  # also waits for the metrics' publishing second
    counts = {name: value - counts_before[name] for name, value in cache_counts(url).items()}
    requests = sum(report["requests"] for report in reports)
    kinds: dict[str, tuple[int, int]] = {}
    for report in reports:
        for kind, (n, e) in report["kinds"].items():
            kinds[kind] = (kinds.get(kind, (0, 0))[0] + n, kinds.get(kind, (0, 0))[1] + e)
    half = seconds / 2
    return {
        "seconds": seconds,
        "segments": len(reports),
        "requests": requests,
        "rps": requests / (time.monotonic() - started),
        "avg_ms": sum(report["avg_ms"] * report["requests"] for report in reports) / max(requests, 1),
        "p95_ms": max(report["p95_ms"] for report in reports),  # the worst segment's
        "p99_ms": max(report["p99_ms"] for report in reports),
        "kinds": kinds,
        "samples": {kind: sample for report in reports for kind, sample in report["samples"].items()},
        "errors": sum(e for _, e in kinds.values()) + sum(report["socket_errors"] for report in reports),
        "sql_per_request": (sql_after - sql_before) / max(requests, 1),
        "context_hit_rate": counts["context hit"] / max(counts["context hit"] + counts["context miss"], 1),
        "slopes": {role: slope_per_min(points) for role, points in samples.items()},
        "second_half_slopes": {
            role: slope_per_min([p for p in points if p[0] >= half]) for role, points in samples.items()
        },
        "first_last": {role: (points[0][1], points[-1][1]) for role, points in samples.items()},
        "keys_before": keys_before,
        "keys_after": int(keys[-1][1]),
        "keys_max": int(max(k for _, k in keys)),
        "maintenance": (maintenance_runs, maintenance_failures),
    }


def _soak_rows(soak: dict) -> list[tuple[str, str]]:
    runs, failed = soak["maintenance"]
    workers = [role for role in soak["first_last"] if role.startswith("worker")]
    entries_first, entries_last = soak["first_last"]["token cache entries"]
    return [
        (
            f"soak: {soak['seconds'] / 60:.0f} min, `maintenance all` every minute ({runs} runs, {failed} failed)",
            f"{soak['requests']:,} requests ({soak['rps']:,.0f}/s) in {soak['segments']} wrk runs with fresh tokens, "
            f"{soak['errors']:,} errors; avg {soak['avg_ms']:.1f} ms, worst run's p95 {soak['p95_ms']:.1f} ms, "
            f"p99 {soak['p99_ms']:.1f} ms",
        ),
        ("soak: requests per kind (errors)", ", ".join(f"{k} {n:,} ({e:,})" for k, (n, e) in soak["kinds"].items())),
        *[(f"soak: first error of {kind}", f"`{sample}`") for kind, sample in soak["samples"].items()],
        (
            "soak: SQL (transactions) per request · user contexts found in Redis",
            f"{soak['sql_per_request']:.3f} · {soak['context_hit_rate']:.1%}",
        ),
        (
            "soak: worker RSS first → last · slope (whole soak) · slope (second half)",
            ", ".join(
                f"{role} {soak['first_last'][role][0]:.0f} → {soak['first_last'][role][1]:.0f} MiB · "
                f"{soak['slopes'][role]:+.2f} · {soak['second_half_slopes'][role]:+.2f} MiB/min"
                for role in workers
            ),
        ),
        (
            "soak: verified tokens cached (all workers) first → last · slope (second half)",
            f"{entries_first:,.0f} → {entries_last:,.0f} · "
            f"{soak['second_half_slopes']['token cache entries']:+,.0f} per min",
        ),
        (
            "soak: Redis keys before · max · after",
            f"{soak['keys_before']:,} · {soak['keys_max']:,} · {soak['keys_after']:,}",
        ),
    ]


def render(r: dict, *, args: argparse.Namespace) -> str:
    steady = r["steady"]
    kinds = steady["kinds"]
    total_errors = sum(e for _, e in kinds.values()) + steady["socket_errors"]
    cpu, rss = steady["cpu"], steady["rss"]
    cores = os.cpu_count() or 1
    busy = sum(cpu.values())

    def per_core(run: dict) -> str:
        used = sum(v for k, v in run["cpu"].items() if k != "wrk")
        return (
            f"{run['rps']:,.1f} req/s with {used:.2f} cores busy (service, Redis, PostgreSQL) "
            f"= **{run['rps'] / used:,.1f} per core**"
        )

    rows = [
        ("mix (share of requests)", ", ".join(f"{kind} {share:.2%}".replace(".00%", "%") for kind, share, _ in MIX)),
        (
            "ramp (connections: req/s · p99)",
            " → ".join(f"{c}: {s['rps']:,.0f} · {s['p99_ms']:.1f} ms" for c, s in r["stages"]),
        ),
        ("average latency", f"{steady['avg_ms']:.1f} ms"),
        ("p95 · p99 latency", f"{steady['p95_ms']:.1f} ms · {steady['p99_ms']:.1f} ms"),
        (
            "error rate (HTTP ≥ 400 or socket errors)",
            f"{total_errors / max(steady['requests'], 1):.3%} ({total_errors} of {steady['requests']:,})",
        ),
        ("requests/s", f"**{steady['rps']:,.0f}**"),
        ("SQL statements (transactions) per request", f"{steady['sql_per_request']:.3f}"),
        (
            "… per request of each kind alone (3 s each, warm)",
            ", ".join(f"{kind} {value:.2f}" for kind, value in r["sql_by_kind"].items()),
        ),
        (
            "requests per kind (errors)",
            ", ".join(f"{k} {n:,} ({e})" for k, (n, e) in kinds.items()),
        ),
        *[(f"first error of {kind}", f"`{sample}`") for kind, sample in steady.get("samples", {}).items()],
        (
            f"CPU, cores busy of {cores} (per process)",
            f"{busy:.2f} in all: " + ", ".join(f"{role} {value:.2f}" for role, value in cpu.items()),
        ),
        ("RSS at the end (per process)", ", ".join(f"{role} {mib:.0f} MiB" for role, mib in rss.items())),
        (
            "Redis at the end: used_memory · keys",
            f"{r['redis_memory'] / 2**20:.0f} MiB · {r['redis_keys']:,} keys",
        ),
        ("PostgreSQL database size at the end", f"{r['pg_size'] / 2**20:.0f} MiB"),
        ("refresh alone (-c16)", per_core(r["refresh_alone"])),
        ("password login alone (-c8)", per_core(r["login_alone"])),
    ]
    if "soak" in r:
        rows += _soak_rows(r["soak"])
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    where = "3-master Redis Cluster" if args.cluster else "single Redis"
    head = (
        f"### {now} — mixed workload, {where}: {args.users:,} users, {cores} cores ({cpu_model()}), "
        f"Python {platform.python_version()}, {args.workers} workers, wrk one connection per thread, "
        f"{args.connections} connections for {args.steady}s after the ramp; load average before "
        f"{r['load_before'][0]:.2f}, after {r['load_after'][0]:.2f}\n\n"
        "| measure | result |\n|---|---|\n"
    )
    return head + "\n".join(f"| {name} | {value} |" for name, value in rows)


if __name__ == "__main__":
    sys.exit(main())
