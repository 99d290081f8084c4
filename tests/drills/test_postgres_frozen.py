"""Drill: PostgreSQL freezes (SIGSTOP on the postmaster and every backend): its port and
the pooled connections stay open, nothing answers — a partition or a stalled machine.

docs/architecture.md, "Failure behaviour": warm authenticated reads keep working; login, register
and refresh answer 503 within a bound (the statement timeout plus a margin, twice: the
statement, then the connection's reset); readiness says so within its check timeout; and
once PostgreSQL thaws, everything works again without restarting the service.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from manas360.db import COMMAND_TIMEOUT_MARGIN_S
from manas360.services.ops.health import CHECK_TIMEOUT_S, READINESS_TTL_S
from tests.drills.helpers import DASHBOARD, answer, login, readiness_after_a_change, register, report, serving
from tests.drills.traffic import Outcome, Traffic, outcome_of
from tests.fixtures.accounts import API, unique_email
from tests.fixtures.server import clients_per_worker
from tests.fixtures.services import wait_until

pytestmark = pytest.mark.slow
STATEMENT_TIMEOUT_MS = 1000
WRITE_ANSWER_BOUND_S = 2 * (STATEMENT_TIMEOUT_MS / 1000 + COMMAND_TIMEOUT_MARGIN_S) + 1.5
READ_ANSWER_BOUND_S = 1.0
RECOVERY_BOUND_S = 15.0


def test_a_frozen_postgresql_answers_writes_503_in_bounded_time_and_recovers(
    drill_environ, private_postgres, tmp_path, record_property
):
    environ = drill_environ(
        DATABASE_URL=f"{private_postgres.url}/manas360", DB_STATEMENT_TIMEOUT=str(STATEMENT_TIMEOUT_MS)
    )
    with serving(environ, tmp_path) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        account = register(http)
        pinned = [client for _ in range(3) for client in clients_per_worker(server.url)]
        for client in pinned:
            client.timeout = httpx.Timeout(30)  # the bound is asserted, not imposed
        for worker in pinned[:2]:  # warm: the user's context in Redis, the catalog in each worker
            assert answer(worker.get(DASHBOARD, headers=account.headers)) == (200, "")
        writes: list[tuple[str, httpx.Client]] = [
            (kind, client) for client in pinned for kind in ("login", "register", "refresh")
        ]

        with Traffic(server.url, DASHBOARD, headers=account.headers) as traffic:
            traffic.wait_for(lambda o: o.status == 200, count=5)
            frozen_at = time.monotonic()
            private_postgres.freeze()
            try:
                with ThreadPoolExecutor(len(writes) + 1) as pool:
                    ready = pool.submit(outcome_of, lambda: readiness_after_a_change(pinned[0]))
                    answers = list(pool.map(lambda job: _write(*job, account=account), writes))
                    ready = ready.result()
                traffic.wait_for(lambda o: o.started > frozen_at, count=10)
            finally:
                thawed_at = time.monotonic()
                private_postgres.thaw()
            recovery_s = wait_until(
                lambda: all(login(w, account.email).status_code == 200 for w in clients_per_worker(server.url)),
                timeout=RECOVERY_BOUND_S,
                what="logins to succeed again on every worker",
            )

        assert {(o.status, o.error) for o in answers} == {(503, "ServiceUnavailable")}, answers
        assert max(o.elapsed for o in answers) < WRITE_ANSWER_BOUND_S, answers
        assert (ready.status, ready.error) == (503, "ServiceUnavailable")
        assert ready.elapsed < READINESS_TTL_S + CHECK_TIMEOUT_S + 1  # a cached "ok", then the check
        during = [o for o in traffic.outcomes if frozen_at <= o.started and o.ended <= thawed_at]
        assert traffic.summary() == {(200, ""): len(traffic.outcomes)}
        assert max(o.elapsed for o in during) < READ_ANSWER_BOUND_S
        for worker in clients_per_worker(server.url):
            pair = login(worker, account.email)
            assert answer(pair) == (200, "")
            assert answer(worker.post(f"{API}/auth/refresh", json={"refresh_token": pair.json()["refresh_token"]})) == (
                200,
                "",
            )

    numbers = {
        "frozen_write_answers": len(answers),
        "frozen_write_max_s": round(max(o.elapsed for o in answers), 3),
        "frozen_ready_s": round(ready.elapsed, 3),
        "frozen_reads": len(during),
        "frozen_read_max_s": round(max(o.elapsed for o in during), 3),
        "recovery_after_thaw_s": round(recovery_s, 3),
    }
    report(record_property, "frozen postgres", numbers)


def _write(kind: str, client: httpx.Client, *, account) -> Outcome:
    if kind == "login":
        return outcome_of(lambda: login(client, account.email))
    if kind == "register":
        return outcome_of(
            lambda: client.post(f"{API}/auth/register", json={"email": unique_email("drill"), "password": "x" * 12})
        )
    return outcome_of(lambda: client.post(f"{API}/auth/refresh", json={"refresh_token": account.refresh_token}))
