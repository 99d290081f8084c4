"""scripts/bench --algorithms: the gated GET with HS256, EdDSA and ES256 access tokens, each
against bare Sanic, in one run.

One database and one private Redis; four servers side by side on this machine (bare Sanic
and `manas360 serve` once per algorithm, the same workers each), only one under load at a
time. Rounds alternate bare, HS256, EdDSA, ES256, so each algorithm's ratio to bare comes from
the same minutes. Two token populations per algorithm: 64 users' tokens (what the
verified-token cache makes of the signature check: the steady state) and N distinct users'
tokens presented for the first time (every request a signature check: the worst case, a
burst of new tokens). Prints a Markdown table and appends it to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from scripts.bench_run import (
    GATED_LUA,
    PREMIUM_ROUTE,
    PY,
    Processes,
    _drop,
    _premium_emails,
    _recreate,
    _user_ids,
    bench_env,
    cpu_model,
    free_port,
    log,
    log_in,
    mint_tokens,
    publish,
    run_cli,
    start_bare,
    start_redis,
    wait_http,
    wrk,
)

ALGORITHMS = ("HS256", "EdDSA", "ES256")
# One run's fresh tokens must outnumber what a run of this length can present, so that every
# request of it meets a token no worker has verified before.
FRESH_PER_ROUND = 60_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench --algorithms", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument(
        "--fresh-duration",
        type=int,
        default=3,
        help="seconds per run of tokens never seen before (short: each token once)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "2")))
    parser.add_argument("--users", type=int, default=20_000, help="synthetic users (premium ones present tokens)")
    parser.add_argument("--no-append", action="store_true", help="print, do not append to BENCHMARKS.md")
    args = parser.parse_args(argv)

    base_url = os.environ.get("TEST_DATABASE_URL", "postgres://root@127.0.0.1:5432")
    database = "manas360_bench_alg"
    admin_dsn = base_url.replace("postgres://", "postgresql://", 1) + "/postgres"
    dsn = f"{base_url.replace('postgres://', 'postgresql://', 1)}/{database}"
    tmp = Path(tempfile.mkdtemp(prefix="manas360-bench-alg-"))
    procs = Processes()
    redis_port, bare_port = free_port(), free_port()
    env = bench_env(base_url=base_url, database=database, redis_port=redis_port, workers=args.workers)
    from manas360.security.signing import generate_private_key

    keys = {
        "EdDSA": [generate_private_key("EdDSA", "bench-eddsa")],
        "ES256": [generate_private_key("ES256", "bench-es256")],
    }
    results: dict[str, dict[str, list[dict[str, float]]]] = {name: {} for name in ("bare", *ALGORITHMS)}
    try:
        asyncio.run(_recreate(admin_dsn, database))
        start_redis(procs, port=redis_port, tmp=tmp, env=env)
        log("migrating and seeding")
        run_cli("migrate", env=env)
        run_cli("seed", env=env)
        run_cli("seed", "--users", str(args.users), env=env)
        run_cli("warm-cache", env=env)
        bare_url = start_bare(procs, env=env, port=bare_port, workers=args.workers, log_path=tmp / "bare.log")
        wait_http(bare_url, log_path=tmp / "bare.log")
        servers: dict[str, tuple[str, dict[str, str]]] = {}
        for algorithm in ALGORITHMS:
            port = free_port()
            # Three servers at once: small pools (the gated GET runs no SQL), within max_connections.
            server_env = {**env, "PORT": str(port), "JWT_ALGORITHM": algorithm, "DB_POOL_MAX": "6"}
            if algorithm in keys:
                server_env["JWT_PRIVATE_KEYS"] = json.dumps(keys[algorithm])
            procs.start([PY, "-m", "manas360.cli", "serve"], env=server_env, log_path=tmp / f"{algorithm}.log")
            url = f"http://127.0.0.1:{port}"
            wait_http(url + "/health/ready", log_path=tmp / f"{algorithm}.log")
            servers[algorithm] = (url, server_env)

        premium = asyncio.run(_premium_emails(dsn))
        premium_ids = asyncio.run(_user_ids(dsn, args.users, premium=True))
        lua = tmp / "gated.lua"
        lua.write_text(GATED_LUA)
        steady: dict[str, Path] = {}
        for algorithm, (url, _) in servers.items():
            path = tmp / f"tokens-{algorithm}"
            path.write_text("\n".join(log_in(url, premium)) + "\n")
            steady[algorithm] = path
            wrk(
                url + PREMIUM_ROUTE,
                seconds=2,
                connections=args.connections,
                script=lua,
                env={"BENCH_TOKENS": str(path)},
            )  # warm every worker's token cache

        log(f"{args.rounds} alternated rounds: bare, then each algorithm (64 tokens, then fresh tokens)")
        for round_number in range(args.rounds):
            # Bare is driven by the same wrk script (and tokens) as the gated runs: the script's
            # per-request cost lands on the cores the servers share.
            same_script = {"script": lua, "env": {"BENCH_TOKENS": str(next(iter(steady.values())))}}
            results["bare"].setdefault("steady", []).append(
                wrk(bare_url, seconds=args.duration, connections=args.connections, **same_script)
            )
            for algorithm, (url, server_env) in servers.items():
                results[algorithm].setdefault("steady", []).append(
                    wrk(
                        url + PREMIUM_ROUTE,
                        seconds=args.duration,
                        connections=args.connections,
                        script=lua,
                        env={"BENCH_TOKENS": str(steady[algorithm])},
                    )
                )
                fresh = tmp / f"fresh-{algorithm}-{round_number}"
                ids = (premium_ids * (FRESH_PER_ROUND // max(len(premium_ids), 1) + 1))[:FRESH_PER_ROUND]
                fresh.write_text("\n".join(mint_tokens(server_env, ids)) + "\n")
                results[algorithm].setdefault("fresh", []).append(
                    wrk(
                        url + PREMIUM_ROUTE,
                        seconds=args.fresh_duration,
                        connections=args.connections,
                        script=lua,
                        env={"BENCH_TOKENS": str(fresh)},
                    )
                )
            results["bare"].setdefault("fresh", []).append(
                wrk(bare_url, seconds=args.fresh_duration, connections=args.connections, **same_script)
            )
    except BaseException:
        for log_path in sorted(tmp.glob("*.log")):
            print(
                f"--- {log_path.name} (last lines)\n" + "\n".join(log_path.read_text().splitlines()[-15:]),
                file=sys.stderr,
            )
        raise
    finally:
        procs.stop_all()
        asyncio.run(_drop(admin_dsn, database))
        shutil.rmtree(tmp, ignore_errors=True)

    publish(render(results, args=args), append=not args.no_append)
    return 0


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def render(results: dict[str, dict[str, list[dict[str, float]]]], *, args: argparse.Namespace) -> str:
    cpu = cpu_model()
    cores = os.cpu_count() or 1
    bare = results["bare"]
    rows = [
        f"| bare Sanic JSON | {_median(bare['steady'], 'rps'):,.0f} · {_median(bare['steady'], 'p99'):.2f} ms "
        f"| 1.00 · 1.00 | {_median(bare['fresh'], 'rps'):,.0f} · {_median(bare['fresh'], 'p99'):.2f} ms "
        "| 1.00 · 1.00 | – |"
    ]
    for algorithm in ALGORITHMS:
        runs = results[algorithm]
        errors = sum(run["non2xx"] + run["socket_errors"] for kind in runs.values() for run in kind)
        cells = []
        for kind in ("steady", "fresh"):
            rps, p99 = _median(runs[kind], "rps"), _median(runs[kind], "p99")
            # Ratios per round (each algorithm's run beside the same round's bare run), then the median.
            ratio = statistics.median(r["rps"] / b["rps"] for r, b in zip(runs[kind], bare[kind], strict=True))
            p99_ratio = statistics.median(r["p99"] / b["p99"] for r, b in zip(runs[kind], bare[kind], strict=True))
            cells.append(f"{rps:,.0f} · {p99:.2f} ms | **{ratio:.2f}** · {p99_ratio:.2f}")
        rows.append(f"| gated GET, {algorithm} | {cells[0]} | {cells[1]} | {errors} |")
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"### {now} — token signing algorithms (`scripts/bench --algorithms`): {cores} cores ({cpu}), "
        f"Python {platform.python_version()}, {args.workers} workers, wrk -t2 -c{args.connections}, "
        f"{args.rounds} alternated rounds ({args.duration} s steady, {args.fresh_duration} s fresh)\n\n"
        "| server | 64 users' tokens (cached): req/s · p99 | ratio to bare · p99 ratio | "
        "tokens never seen before: req/s · p99 | ratio to bare · p99 ratio | non-2xx |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows)
    )


if __name__ == "__main__":
    sys.exit(main())
