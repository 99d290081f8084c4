"""The processes a benchmark watches: CPU and memory by role, read from /proc, and Redis's own counters.

Shared by `scripts/bench` (the population runs, the logins), `--cluster` and `--mixed`: each
reports the CPU every process used during a run (cores busy, and per request), because the
service, Redis, PostgreSQL and wrk share this machine's cores and a ratio alone does not say
who spent them.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Watched:
    """The processes whose CPU and memory a report lists, by role."""

    roles: dict[str, list[int]] = field(default_factory=dict)

    def cpu_ticks(self) -> dict[str, int]:
        return {role: sum(ticks(pid) for pid in pids) for role, pids in self.roles.items()}

    def cores_busy(self, before: dict[str, int], *, seconds: float) -> dict[str, float]:
        """Cores each role kept busy since `before` (a `cpu_ticks()`), over `seconds`."""
        after = self.cpu_ticks()
        return {role: (after[role] - before.get(role, 0)) / CLK_TCK / seconds for role in after}

    def rss_mib(self) -> dict[str, float]:
        return {role: sum(rss_kib(pid) for pid in pids) / 1024 for role, pids in self.roles.items()}

    def peak_rss_mib(self) -> dict[str, float]:
        return {role: sum(_status_kib(pid, "VmHWM") for pid in pids) / 1024 for role, pids in self.roles.items()}


def ticks(pid: int) -> int:
    """CPU time (user + system) the process has used, in clock ticks; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def rss_kib(pid: int) -> int:
    return _status_kib(pid, "VmRSS")


def _status_kib(pid: int, name: str) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(rf"{name}:\s+(\d+) kB", status)
    return int(match.group(1)) if match else 0


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(child) for child in out]


def service_processes(serve: subprocess.Popen, *, label: str = "") -> dict[str, list[int]]:
    """`manas360 serve`'s processes by role: each worker ("worker 1", ...) and Sanic's main
    process with its helpers (multiprocessing's manager; "serve main"). A worker is told by
    the SANIC_WORKER_NAME its parent put in its environment when it started it."""
    prefix = f"{label} " if label else ""
    roles: dict[str, list[int]] = {f"{prefix}serve main": [serve.pid]}
    workers = []
    for child in children(serve.pid):
        try:
            environ = Path(f"/proc/{child}/environ").read_bytes()
        except OSError:
            continue
        if b"SANIC_WORKER_NAME=Sanic-Server" in environ:
            workers.append(child)
        else:
            roles[f"{prefix}serve main"].append(child)
    for number, pid in enumerate(sorted(workers), 1):
        roles[f"{prefix}worker {number}"] = [pid]
    return roles


def postgres_backends(database: str) -> list[int]:
    """PostgreSQL's processes that serve the bench: the postmaster, its background processes
    and the backends connected to the bench database (not other databases' backends)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        client_backend = re.match(r"postgres: \S+: \S+ \S+ ", cmdline)  # "postgres: 15/main: user db host ..."
        if "bin/postgres " in cmdline or (cmdline.startswith("postgres: ") and not client_backend):
            pids.append(int(entry.name))
        elif client_backend and f" {database} " in cmdline:
            pids.append(int(entry.name))
    return pids


def redis_cli(port: int, *args: str, password: str | None = None) -> str:
    """What `redis-cli -p PORT ARGS...` prints (the password passed in the environment)."""
    env = {**os.environ, **({"REDISCLI_AUTH": password} if password else {})}
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, env=env).stdout


def redis_info(ports: list[int], section: str, name: str, *, password: str | None = None) -> int:
    """An integer field of `INFO section`, summed over the nodes."""
    total = 0
    for port in ports:
        match = re.search(rf"^{name}:(\d+)", redis_cli(port, "info", section, password=password), re.M)
        total += int(match.group(1)) if match else 0
    return total


def redis_keys(ports: list[int], *, password: str | None = None) -> int:
    return sum(int(redis_cli(port, "dbsize", password=password).strip() or 0) for port in ports)


def mean_cores(runs: list[dict]) -> dict[str, float]:
    """Cores each role kept busy, averaged over wrk runs made with `watched` (their "cpu")."""
    return {role: statistics.fmean(run["cpu"][role] for run in runs) for role in runs[0]["cpu"]}


def slope_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) samples, per minute."""
    if len(samples) < 2:
        return 0.0
    xs, ys = [s[0] for s in samples], [s[1] for s in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def run_watched(
    command: list[str], *, env: dict[str, str], watched: Watched | None = None
) -> tuple[str, dict[str, float]]:
    """Run a load generator to its end; its output, and the cores each watched role kept busy
    meanwhile with the generator's own as "wrk" (empty without `watched`)."""
    before = watched.cpu_ticks() if watched else {}
    started = time.monotonic()
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.PIPE, text=True)
    out = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)  # the generator's own CPU, exactly, as it is reaped
    process.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - started
    if watched is None:
        return out, {}
    cores = watched.cores_busy(before, seconds=elapsed)
    cores["wrk"] = (usage.ru_utime + usage.ru_stime) / elapsed
    return out, cores
