"""scripts/bench --cluster: the gated GET on a three-master Redis Cluster vs the same build on one node.

One run, on this machine: a fresh PostgreSQL database, a private single Redis and a private
three-master Redis Cluster (tests/fixtures/redis_cluster.py: no persistence, loopback),
two `manas360 serve` of the same build and worker count that differ only in REDIS_URL, rate
limits raised so they count but never block, and wrk driving the gated GET
(`/api/v1/premium/dashboard`) with the same tokens, single and cluster alternated round by
round. Target (issue 15): cluster ≥ 0.8 of single. The table (with the load average, since
the cores are shared) is printed and appended to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from scripts.bench_procs import Watched, mean_cores, service_processes
from scripts.bench_run import (
    GATED_LUA,
    PY,
    SYNTHETIC_PASSWORD,
    Processes,
    _drop,
    _premium_emails,
    bench_env,
    cpu_model,
    free_port,
    log,
    publish,
    run_cli,
    start_redis,
    wait_http,
    wrk,
)
from tests.fixtures.redis_cluster import start_redis_cluster


def log_in(url: str, emails: list[str], *, at_once: int = 4) -> list[str]:
    """Access tokens of `emails`, a few logins at a time (bcrypt: a burst of 64 on two
    shared cores outlasts the request timeout)."""

    async def all_of_them() -> list[str]:
        gate = asyncio.Semaphore(at_once)
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:

            async def one(email: str) -> str:
                async with gate:
                    response = await client.post(
                        "/api/v1/auth/login", json={"email": email, "password": SYNTHETIC_PASSWORD}
                    )
                response.raise_for_status()
                token: str = response.json()["access_token"]
                return token

            return list(await asyncio.gather(*(one(email) for email in emails)))

    return asyncio.run(all_of_them())


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench --cluster", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternated single/cluster rounds")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "2")))
    parser.add_argument("--no-append", action="store_true", help="print, do not append to BENCHMARKS.md")
    args = parser.parse_args(argv)

    base_url = os.environ.get("TEST_DATABASE_URL", "postgres://root@127.0.0.1:5432")
    database = "manas360_bench_cluster"
    admin_dsn = base_url.replace("postgres://", "postgresql://", 1) + "/postgres"
    tmp = Path(tempfile.mkdtemp(prefix="manas360-bench-cluster-"))
    procs = Processes()
    redis_port, single_port, cluster_port = free_port(), free_port(), free_port()
    env = bench_env(base_url=base_url, database=database, redis_port=redis_port, workers=args.workers)
    results: dict[str, object] = {"load_before": load_average()}
    try:
        asyncio.run(_drop(admin_dsn, database))
        with start_redis_cluster() as cluster:
            start_redis(procs, port=redis_port, tmp=tmp, env=env)
            log("migrating and seeding")
            run_cli("migrate", env=env)
            run_cli("seed", env=env)
            run_cli("seed", "--users", "1000", env=env)
            redis_pid = procs.running[-1].pid
            servers = {"single": (single_port, env["REDIS_URL"]), "cluster": (cluster_port, cluster.url)}
            serves = {}
            for name, (port, redis_url) in servers.items():
                serves[name] = procs.start(
                    [PY, "-m", "manas360.cli", "serve"],
                    log_path=tmp / f"serve-{name}.log",
                    env={
                        **env,
                        "PORT": str(port),
                        "REDIS_URL": redis_url,
                        "PROMETHEUS_MULTIPROC_DIR": str(tmp / f"metrics-{name}"),
                    },
                )
            for name, (port, _) in servers.items():
                wait_http(f"http://127.0.0.1:{port}/health/ready", log_path=tmp / f"serve-{name}.log")
            time.sleep(1)  # every worker has started
            # Each server's runs are watched with its own Redis: the single node, or the three masters.
            watched = {
                "single": Watched({**service_processes(serves["single"]), "redis": [redis_pid]}),
                "cluster": Watched(
                    {
                        **service_processes(serves["cluster"]),
                        **{f"redis {n}": [p.pid] for n, p in enumerate(cluster.processes, 1)},
                    }
                ),
            }

            emails = asyncio.run(_premium_emails(f"{base_url.replace('postgres://', 'postgresql://', 1)}/{database}"))
            log(f"logging in {len(emails)} premium users")
            tokens = log_in(f"http://127.0.0.1:{single_port}", emails)
            (tmp / "tokens").write_text("\n".join(tokens) + "\n")
            gated_lua = tmp / "gated.lua"
            gated_lua.write_text(GATED_LUA)
            lua_env = {"BENCH_TOKENS": str(tmp / "tokens")}

            def gated(name: str, seconds: int = args.duration) -> dict[str, float]:
                url = f"http://127.0.0.1:{servers[name][0]}/api/v1/premium/dashboard"
                return wrk(
                    url,
                    seconds=seconds,
                    connections=args.connections,
                    script=gated_lua,
                    env=lua_env,
                    watched=watched[name],
                )

            for name in servers:  # warm-up: caches filled, connections open, slot map loaded
                gated(name, seconds=2)
            log(f"single vs cluster, {args.rounds} alternated rounds of {args.duration}s, -c{args.connections}")
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
            for _ in range(args.rounds):
                for name in servers:
                    runs[name].append(gated(name))
            results["runs"] = runs
            results["load_after"] = load_average()
    finally:
        procs.stop_all()
        asyncio.run(_drop(admin_dsn, database))
        shutil.rmtree(tmp, ignore_errors=True)

    publish(render(results, args=args), append=not args.no_append)
    return 0


def _cpu_per_request(runs: list[dict]) -> dict[str, float]:
    """Microseconds of CPU each role spent per request, averaged over the rounds; "all" first.
    Sanic's main processes (idle) are left out, workers and Redis nodes summed by kind too."""
    per_round = [{role: 1e6 * cores / run["rps"] for role, cores in run["cpu"].items()} for run in runs]
    roles = [role for role in per_round[0] if "serve main" not in role]
    mean = {role: statistics.fmean(r[role] for r in per_round) for role in roles}
    workers = sum(us for role, us in mean.items() if role.startswith("worker"))
    redis = sum(us for role, us in mean.items() if role.startswith("redis"))
    return {"all": sum(mean.values()), "workers": workers, "redis (all nodes)": redis, **mean}


def render(r: dict, *, args: argparse.Namespace) -> str:
    runs = r["runs"]
    single, cluster = runs["single"], runs["cluster"]
    med = {
        name: {key: statistics.median(run[key] for run in rs) for key in ("rps", "p50", "p99")}
        for name, rs in runs.items()
    }
    ratios = [c["rps"] / s["rps"] for s, c in zip(single, cluster, strict=True)]
    errors = sum(run["non2xx"] + run["socket_errors"] for rs in runs.values() for run in rs)
    rows = [
        (
            "gated GET, single Redis: req/s · p50 · p99 (medians)",
            f"{med['single']['rps']:,.0f} · {med['single']['p50']:.2f} ms · {med['single']['p99']:.2f} ms",
        ),
        (
            "gated GET, 3-master Redis Cluster: req/s · p50 · p99 (medians)",
            f"{med['cluster']['rps']:,.0f} · {med['cluster']['p50']:.2f} ms · {med['cluster']['p99']:.2f} ms",
        ),
        (
            "cluster / single: req/s ratio (of medians) · per round",
            f"**{med['cluster']['rps'] / med['single']['rps']:.2f}** · " + ", ".join(f"{x:.2f}" for x in ratios),
        ),
        ("cluster / single: p99 ratio", f"{med['cluster']['p99'] / med['single']['p99']:.2f}"),
        (
            "req/s per round, single · cluster",
            " · ".join(f"{s['rps']:,.0f}/{c['rps']:,.0f}" for s, c in zip(single, cluster, strict=True)),
        ),
        *[
            (
                f"{name}: CPU per request (µs, mean of rounds) · cores busy",
                ", ".join(f"{role} {us:.0f}" for role, us in _cpu_per_request(rs).items())
                + f" · {sum(mean_cores(rs).values()):.2f}",
            )
            for name, rs in runs.items()
        ],
        ("non-2xx or socket errors (both)", f"{errors}"),
        ("load average (1/5/15 min) before · after", f"{r['load_before']} · {r['load_after']}"),
    ]
    cpu = cpu_model()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = (
        f"### {now} — cluster vs single node: {os.cpu_count()} cores ({cpu}), Python "
        f"{platform.python_version()}, {args.workers} workers each, wrk -t2 -c{args.connections}, "
        f"{args.rounds}×{args.duration}s rounds alternated\n\n| measure | result |\n|---|---|\n"
    )
    return head + "\n".join(f"| {name} | {value} |" for name, value in rows)


if __name__ == "__main__":
    sys.exit(main())
