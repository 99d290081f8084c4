"""Synthetic users for staging and load tests (`manas360 seed --users N`).

User `i` (1..N) is `user{i:06d}@synthetic.manas360.test`; its role, plan history and
timestamps are a pure function of `i` (`synthetic_profile`), so a run is repeatable and a
re-run only adds the users that are missing. Every synthetic user has the documented
password `SYNTHETIC_PASSWORD`, hashed once per run at the configured cost.

Speed: rows are generated in Python and streamed with COPY into temporary staging tables,
then moved with one INSERT ... SELECT ... ON CONFLICT DO NOTHING per batch. Each batch
(users and their subscriptions together) is one transaction, so an interrupted run leaves
only whole batches behind and nothing half-made.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from manas360 import db
from manas360.queries.ops import synthetic as synthetic_queries
from manas360.queries.ops.synthetic import SubscriptionRecord, UserRecord
from manas360.security.passwords import hash_password
from manas360.settings import Settings

SYNTHETIC_PASSWORD = "manas360-load-test"
SYNTHETIC_DOMAIN = "synthetic.manas360.test"
DEFAULT_BATCH_SIZE = 10_000

ADMIN_EVERY = 200  # user 200, 400, ... is an admin: 0.5%, deterministic
# Share (per mille) of users by the plan they have or had; "free" users have no row.
PLAN_MIX: tuple[tuple[str, int], ...] = (
    ("free", 650),
    ("basic", 150),
    ("premium", 110),
    ("professional", 60),
    ("enterprise", 30),
)
# Of users on a paid plan (percent): the subscription is active, expired or cancelled.
ACTIVE_PCT, EXPIRED_PCT = 75, 15  # the remaining 10% cancelled
UPGRADED_PCT = 10  # of active paid users, also have an expired subscription to a cheaper plan

_MIX64 = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1
_DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class SyntheticSubscription:
    plan: str
    status: str  # active | expired | cancelled
    starts_ago_s: int  # seconds before the run
    ends_in_s: int  # seconds after the run (negative: in the past)


@dataclass(frozen=True, slots=True)
class SyntheticProfile:
    role: str
    created_ago_s: int
    last_login_ago_s: int | None
    subscriptions: tuple[SyntheticSubscription, ...]

    @property
    def plan(self) -> str:
        """The plan the user is on now (free without an active subscription)."""
        return next((s.plan for s in self.subscriptions if s.status == "active"), "free")


@dataclass(slots=True)
class SyntheticReport:
    """Progress so far; the final value is the run's summary."""

    requested: int
    processed: int = 0
    created: int = 0
    skipped: int = 0
    subscriptions: int = 0
    batches: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def elapsed_s(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        """Users processed per second."""
        return self.processed / self.elapsed_s if self.elapsed_s > 0 else 0.0


def synthetic_email(index: int) -> str:
    return f"user{index:06d}@{SYNTHETIC_DOMAIN}"


def synthetic_profile(index: int) -> SyntheticProfile:
    """The role, subscriptions and timestamps of synthetic user `index` (deterministic)."""
    h = _scramble(index)
    created_ago = (30 + (h >> 8) % 700) * _DAY_S + (h >> 20) % _DAY_S
    plan = _pick_plan((h >> 40) % 1000)
    subscriptions: tuple[SyntheticSubscription, ...] = ()
    if plan != "free":
        subscriptions = _subscriptions(plan=plan, roll=(h >> 50) % 100, created_ago=created_ago)
    if index % ADMIN_EVERY == 0:
        role = "admin"
    else:
        role = "subscriber" if any(s.status == "active" for s in subscriptions) else "user"
    activity = (h >> 30) % 100
    if activity < 85:  # most logged in within the last 90 days, some long ago, some never
        last_login = min(created_ago, (h >> 12) % (90 * _DAY_S))
    elif activity < 95:
        last_login = min(created_ago, 90 * _DAY_S + (h >> 12) % (275 * _DAY_S))
    else:
        last_login = None
    return SyntheticProfile(
        role=role, created_ago_s=created_ago, last_login_ago_s=last_login, subscriptions=subscriptions
    )


def _scramble(index: int) -> int:
    """A 64-bit mix of `index` (splitmix64's finaliser): cheap, well spread, repeatable."""
    z = (index * _MIX64) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _pick_plan(roll: int) -> str:
    for plan, share in PLAN_MIX:
        if roll < share:
            return plan
        roll -= share
    return PLAN_MIX[-1][0]


def _subscriptions(*, plan: str, roll: int, created_ago: int) -> tuple[SyntheticSubscription, ...]:
    starts_ago = created_ago // 2
    if roll < ACTIVE_PCT:
        current = SyntheticSubscription(plan, "active", starts_ago, (roll + 1) * 4 * _DAY_S)
        cheaper = {"premium": "basic", "professional": "premium", "enterprise": "professional"}.get(plan)
        if cheaper and roll < UPGRADED_PCT:
            earlier = SyntheticSubscription(cheaper, "expired", created_ago - 1, -starts_ago)
            return earlier, current
        return (current,)
    status = "expired" if roll < ACTIVE_PCT + EXPIRED_PCT else "cancelled"
    return (SyntheticSubscription(plan, status, starts_ago, -(starts_ago // 2 + _DAY_S)),)


async def seed_synthetic_users(
    *,
    settings: Settings,
    count: int,
    batch_size: int | None = None,
    on_batch: Callable[[SyntheticReport], None] | None = None,
) -> SyntheticReport:
    """Make sure synthetic users 1..`count` exist; `on_batch` sees the report after each commit."""
    batch_size = batch_size or DEFAULT_BATCH_SIZE
    if count < 0 or batch_size < 1:
        raise ValueError("count must be >= 0 and batch_size >= 1")
    report = SyntheticReport(requested=count)
    password_hash = await hash_password(password=SYNTHETIC_PASSWORD, cost=settings.bcrypt_cost)
    conn = await db.connect(
        settings,
        server_settings={"application_name": "manas360-seed", "statement_timeout": str(settings.db_statement_timeout)},
    )
    try:
        role_ids, plan_ids = await _reference_ids(conn)
        await synthetic_queries.create_stage_tables(conn=conn)
        now = datetime.now(UTC)
        for first in range(1, count + 1, batch_size):
            last = min(first + batch_size - 1, count)
            await _seed_batch(
                conn,
                first=first,
                last=last,
                now=now,
                password_hash=password_hash,
                role_ids=role_ids,
                plan_ids=plan_ids,
                report=report,
            )
            if on_batch is not None:
                on_batch(report)
        if report.created:
            await synthetic_queries.analyze_accounts(conn=conn)
    finally:
        await conn.close(timeout=5)
    report.finished = time.monotonic()
    return report


async def _reference_ids(conn: asyncpg.Connection) -> tuple[dict[str, int], dict[str, int]]:
    roles = await synthetic_queries.role_ids(conn=conn)
    plans = await synthetic_queries.plan_ids(conn=conn)
    missing = ({"user", "subscriber", "admin"} - set(roles)) | ({name for name, _ in PLAN_MIX} - set(plans))
    if missing:
        raise LookupError(f"reference data missing ({', '.join(sorted(missing))}): run `manas360 seed` first")
    return roles, plans


async def _seed_batch(
    conn: asyncpg.Connection,
    *,
    first: int,
    last: int,
    now: datetime,
    password_hash: str,
    role_ids: dict[str, int],
    plan_ids: dict[str, int],
    report: SyntheticReport,
) -> None:
    emails = [synthetic_email(i) for i in range(first, last + 1)]
    async with conn.transaction():
        existing = await synthetic_queries.existing_emails(conn=conn, emails=emails)
        created = subscriptions = 0
        if len(existing) < len(emails):
            users, subs = _rows(
                first=first, emails=emails, existing=existing, now=now, role_ids=role_ids, plan_ids=plan_ids
            )
            await synthetic_queries.stage_users(conn=conn, records=users)
            if subs:
                await synthetic_queries.stage_subscriptions(conn=conn, records=subs)
            created, subscriptions = await synthetic_queries.merge_staged(conn=conn, password_hash=password_hash)
    report.processed += len(emails)
    report.created += created
    report.skipped += len(emails) - created
    report.subscriptions += subscriptions
    report.batches += 1


def _rows(
    *,
    first: int,
    emails: list[str],
    existing: set[str],
    now: datetime,
    role_ids: dict[str, int],
    plan_ids: dict[str, int],
) -> tuple[list[UserRecord], list[SubscriptionRecord]]:
    users: list[UserRecord] = []
    subs: list[SubscriptionRecord] = []
    for index, email in enumerate(emails, start=first):
        if email in existing:
            continue
        profile = synthetic_profile(index)
        user_id = uuid.uuid4()
        last_login = None if profile.last_login_ago_s is None else now - timedelta(seconds=profile.last_login_ago_s)
        users.append(
            (
                user_id,
                email,
                f"Synthetic User {index}",
                role_ids[profile.role],
                now - timedelta(seconds=profile.created_ago_s),
                last_login,
            )
        )
        for sub in profile.subscriptions:
            subs.append(
                (
                    uuid.uuid4(),
                    user_id,
                    plan_ids[sub.plan],
                    sub.status,
                    now - timedelta(seconds=sub.starts_ago_s),
                    now + timedelta(seconds=sub.ends_in_s),
                )
            )
    return users, subs
