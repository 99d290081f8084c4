"""Drill: PostgreSQL is stopped (`pg_ctl stop -m fast`: every session terminated) under a
running two-worker service, then started again.

docs/architecture.md, "Failure behaviour": authenticated reads served from warm Redis keep working;
login, register and refresh answer 503 within a bound (no 500, no hang); once PostgreSQL
is back everything works again without restarting the service, on every worker, with no
dead pooled connection handed out afterwards.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.drills.helpers import DASHBOARD, OUTAGE_ANSWER_BOUND_S, answer, login, register, report, serving
from tests.drills.traffic import Traffic, outcome_of
from tests.fixtures.accounts import API, unique_email
from tests.fixtures.server import clients_per_worker
from tests.fixtures.services import wait_until

pytestmark = pytest.mark.slow
RECOVERY_BOUND_S = 15.0
AFTER_RECOVERY_ROUNDS = 10


def test_postgresql_stopped_keeps_warm_reads_fails_writes_closed_then_recovers(
    drill_environ, private_postgres, tmp_path, record_property
):
    environ = drill_environ(DATABASE_URL=f"{private_postgres.url}/manas360")
    with serving(environ, tmp_path) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        account = register(http)
        workers = clients_per_worker(server.url)
        for worker in workers:  # warm: the user's context in Redis, the catalog in each worker
            assert answer(worker.get(DASHBOARD, headers=account.headers)) == (200, "")

        with Traffic(server.url, DASHBOARD, headers=account.headers) as traffic:
            traffic.wait_for(lambda o: o.status == 200, count=5)
            stopped_at = time.monotonic()
            stop_s = private_postgres.stop(mode="fast")

            reads = [
                outcome_of(lambda w=w: w.get(DASHBOARD, headers=account.headers)) for w in workers for _ in range(5)
            ]
            writes = []
            for worker in workers:
                writes += [
                    outcome_of(lambda worker=worker: login(worker, account.email)),
                    outcome_of(
                        lambda worker=worker: worker.post(
                            f"{API}/auth/register", json={"email": unique_email("drill"), "password": "x" * 12}
                        )
                    ),
                    outcome_of(
                        lambda worker=worker: worker.post(
                            f"{API}/auth/refresh", json={"refresh_token": account.refresh_token}
                        )
                    ),
                ]
            traffic.wait_for(lambda o: o.started > stopped_at + stop_s, count=20)

            restarted_at = time.monotonic()
            private_postgres.start()
            recovery_s = wait_until(
                lambda: all(login(w, account.email).status_code == 200 for w in workers),
                timeout=RECOVERY_BOUND_S,
                what="logins to succeed again on every worker",
            )

        assert {(o.status, o.error) for o in reads} == {(200, "")}
        assert {(o.status, o.error) for o in writes} == {(503, "ServiceUnavailable")}, writes
        assert max(o.elapsed for o in reads + writes) < OUTAGE_ANSWER_BOUND_S
        during = [o for o in traffic.outcomes if stopped_at <= o.started and o.ended <= restarted_at]
        assert traffic.summary() == {(200, ""): len(traffic.outcomes)}
        assert max(o.elapsed for o in during) < OUTAGE_ANSWER_BOUND_S

        # Back for good: no request meets a pooled connection PostgreSQL dropped.
        after = []
        for worker in clients_per_worker(server.url):
            for _ in range(AFTER_RECOVERY_ROUNDS):
                pair = login(worker, account.email)
                after.append(answer(pair))
                after.append(
                    answer(worker.post(f"{API}/auth/refresh", json={"refresh_token": pair.json()["refresh_token"]}))
                )
            after.append(
                answer(worker.post(f"{API}/auth/register", json={"email": unique_email("drill"), "password": "x" * 12}))
            )
        assert set(after) == {(200, ""), (201, "")}, after

    numbers = {
        "pg_stop_s": round(stop_s, 3),
        "outage_reads": len(reads) + len(during),
        "outage_read_max_s": round(max(o.elapsed for o in reads + during), 3),
        "outage_write_max_s": round(max(o.elapsed for o in writes), 3),
        "recovery_after_start_s": round(recovery_s, 3),
    }
    report(record_property, "postgres", numbers)
