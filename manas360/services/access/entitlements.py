"""The hot path: who is calling and what they may do, decided with one Redis round trip.

`authorize` verifies the bearer token (CPU only; any failure is a 401 before Redis is
touched), then runs ONE script on the user's hash-tagged keys that answers together: is
the token revoked (jti, session, epoch), the user's context (role, plan, plan end,
status) and the `api` rate-limit verdict; the reference-catalog version rides in the
same write. A warm request runs no SQL. On a miss (cold cache, eviction, Redis restarted)
the context and the revocations are read from PostgreSQL in one query, written back
with TTLs, and the decision is taken from what was read, so losing Redis never grants
what PostgreSQL would refuse.

Plan expiry needs no job: the context carries the subscription's end and a plan whose
end has passed counts as free at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple

from loguru import logger

from manas360.after_commit import retry_in_background, run_to_completion
from manas360.clock import Clock, to_ms
from manas360.db import Database
from manas360.errors import (
    AppError,
    FeatureNotAvailable,
    InsufficientPrivileges,
    PermissionDenied,
    ReauthenticationRequired,
    TokenRevoked,
    status_refusal,
)
from manas360.metrics import ENTITLEMENT_HITS, ENTITLEMENT_MISSES
from manas360.models import ACCOUNT_ACTIVE
from manas360.queries.access import entitlements as entitlement_queries
from manas360.queries.access.entitlements import UserStateRow
from manas360.rate_policies import RatePolicy
from manas360.security.jwt import AccessTokenCodec
from manas360.services.access import catalog_defaults as reference
from manas360.services.access.catalog import Catalog, CatalogHolder
from manas360.services.auth.principal import Principal, bearer_token
from manas360.services.auth.revocation import LOADED_TTL_S, SKEW_MARGIN_S, revocations_at
from manas360.settings import Settings
from manas360.store import Store, StoreUnavailable
from manas360.store.catalog import bump_catalog_version, get_catalog_version
from manas360.store.entitlements import (
    NO_GENERATION,
    ClientCheck,
    ClientLimit,
    UserContext,
    UserFill,
    check_request,
    forget_user_context,
    store_user_states,
)
from manas360.store.ratelimit import Verdict
from manas360.store.revocations import Revocations

CONTEXT_TTL_S = LOADED_TTL_S
"""How long a cached user context lives; also the bound on staleness when Redis was
unreachable while a write tried to delete it (the write itself still commits)."""

ADMIN_READ, ADMIN_WRITE = 1, 2
"""`Needs.admin`: an administrative read (aal 2 when ADMIN_REQUIRE_MFA) or write (also a fresh auth_time)."""


@dataclass(frozen=True, slots=True)
class Needs:
    """What a route requires: permissions (any of), features (all of), a minimum level, and
    for administrative routes (`admin`) the assurance ADMIN_REQUIRE_MFA asks of them."""

    permissions: frozenset[str] = frozenset()
    features: frozenset[str] = frozenset()
    min_privilege: int = 0
    admin: int = 0


# A NamedTuple, not a frozen dataclass: built on every gated request (see store/entitlements.py).
class Access(NamedTuple):
    """The authorized caller with live entitlements (never read from the token)."""

    principal: Principal
    role: str
    privilege_level: int
    plan: str
    catalog: Catalog
    rate: Verdict

    @property
    def user_id(self) -> str:
        return self.principal.user_id

    @property
    def permissions(self) -> frozenset[str]:
        return self.catalog.permissions_of(self.role)

    @property
    def features(self) -> frozenset[str]:
        return self.catalog.features_of(self.plan)


async def authorize(
    *,
    db: Database,
    settings: Settings,
    store: Store,
    codec: AccessTokenCodec,
    catalog: CatalogHolder,
    clock: Clock,
    authorization_header: str | None,
    needs: Needs,
    on_rate: Callable[[Verdict, str], None],
    client_check: ClientCheck[RatePolicy] | None = None,
    check_client_alone: Callable[[], Awaitable[None]] | None = None,
) -> Access:
    """Authenticate, load live entitlements in one round trip, gate; raise the API error.

    `client_check`: the per-IP limit, checked first in the same round trip (a request it
    refuses spends nothing of the user's), or on its own (`check_client_alone`, the edge's
    check) when the token is refused before Redis is asked. `on_rate(verdict, log_key)`
    receives each verdict (per-IP, then `api`) before the gate is applied: it renders the
    RateLimit headers and raises 429 on a denial, so a throttled caller learns nothing more.
    """
    try:
        principal = codec.verify(bearer_token(authorization_header))
    except AppError:
        if check_client_alone is not None:  # a bad token still counts against the client's limit
            await check_client_alone()
        raise
    policy = settings.rate_policies["api"]
    client_limit = None
    if client_check is not None:
        client_policy = client_check.policy
        client_limit = ClientLimit(client_check.key, client_policy.limit, client_policy.window_s)
    check, version = await check_request(
        store,
        user_id=principal.user_id,
        session_id=principal.session_id,
        jti=principal.jti,
        issued_ms=principal.issued_ms,
        api_limit=policy.limit,
        api_window_s=policy.window_s,
        client_limit=client_limit,
    )
    # Values built positionally: from keywords, a NamedTuple costs twice as much (every request).
    if check.client is not None and client_check is not None:
        client, client_policy = check.client, client_check.policy
        on_rate(
            Verdict(
                client_policy.name,
                client.allowed,
                client_policy.limit,
                client.remaining,
                client.reset_s,
                client_policy.window_s,
            ),
            client_check.log_key,
        )
    context, revoked = check.context, check.revoked
    if context is not None and (check.loaded or revoked):
        ENTITLEMENT_HITS.inc()
    else:
        ENTITLEMENT_MISSES.inc()
        state = await load_user_state(
            db=db, settings=settings, store=store, clock=clock, user_id=principal.user_id, generation=check.generation
        )
        context = state.context
        revoked = revoked or state.revokes(principal, issued_ms=principal.issued_ms)
    # A disabled or pending-deletion account is told so even with a token that it revoked;
    # the status rides in the cached context: no SQL, no extra round trip.
    if context.status != ACCOUNT_ACTIVE:
        raise status_refusal(context.status)
    if revoked:
        raise TokenRevoked()
    rate = Verdict("api", check.allowed, policy.limit, check.remaining, check.reset_s, policy.window_s)
    on_rate(rate, f"u:{principal.user_id}")
    current = catalog.at(version)
    if current is None:
        current = await catalog.ensure(version=version)
    # Time-bound rules use Redis's clock, read in the same round trip: one clock for every
    # worker, whatever each host's own says (the worker's only if Redis sent none).
    now_ms = check.now_ms or clock.now_ms()
    access = Access(
        principal, context.role, current.level_of(context.role), effective_plan(context, now_ms), current, rate
    )
    _gate(access, needs)
    if needs.admin and settings.admin_mfa_required:
        _admin_assurance(principal, needs=needs, settings=settings, now_ms=now_ms)
    return access


def _admin_assurance(principal: Principal, *, needs: Needs, settings: Settings, now_ms: int) -> None:
    """ADMIN_REQUIRE_MFA: every admin route at `aal` 2, every admin write with a fresh
    `auth_time` too (read from the verified token: no round trip). An admin without MFA must
    enrol first; the command line is not affected."""
    age_ms = now_ms - principal.auth_time * 1000
    stale = needs.admin == ADMIN_WRITE and age_ms > settings.reauth_max_age_s * 1000
    if principal.aal < 2 or stale:
        raise ReauthenticationRequired(max_age=settings.reauth_max_age_s, required_aal=2)


def effective_plan(context: UserContext, now_ms: int) -> str:
    """The plan the user has at `now_ms`: free once the subscription's end has passed."""
    if context.plan_end_ms and context.plan_end_ms <= now_ms:
        return reference.FREE_PLAN
    return context.plan


def _gate(access: Access, needs: Needs) -> None:
    if access.privilege_level < needs.min_privilege:
        raise InsufficientPrivileges()
    if needs.permissions and not (needs.permissions & access.permissions):
        raise PermissionDenied()
    if needs.features:
        features = access.features
        if not needs.features <= features:  # the difference is built only for a refusal
            plan = access.catalog.cheapest_plan_with(needs.features - features)
            upgrade = {"plan": plan.name, "price_cents": plan.price_cents} if plan else None
            raise FeatureNotAvailable(upgrade=upgrade)


_loading: dict[tuple[str, str], asyncio.Task[UserState | None]] = {}


async def load_user_state(
    *, db: Database, settings: Settings, store: Store, clock: Clock, user_id: str, generation: str = NO_GENERATION
) -> UserState:
    """Cold cache: one query for context and revocations, written back (unless invalidated
    meanwhile: `generation` was read in the request's round trip, before PostgreSQL);
    single-flight per worker and generation, so a burst of requests for one cold user costs
    one query. A request joins only a load begun at the generation it read itself: one that
    began before an invalidation (a demotion, a disable) read PostgreSQL before the change
    may have committed, and fill.lua refusing to store it would not stop it from answering
    the requests that joined it. TokenRevoked when the user no longer exists."""
    key = (user_id, generation)
    pending = _loading.get(key)
    if pending is None:
        pending = asyncio.get_running_loop().create_task(
            _read_and_fill(db=db, settings=settings, store=store, clock=clock, user_id=user_id, generation=generation)
        )
        _loading[key] = pending
        pending.add_done_callback(lambda _: _loading.pop(key, None))
    state = await asyncio.shield(pending)
    if state is None:
        raise TokenRevoked()
    return state


async def _read_and_fill(
    *, db: Database, settings: Settings, store: Store, clock: Clock, user_id: str, generation: str = NO_GENERATION
) -> UserState | None:
    row = await entitlement_queries.fetch_user_state(
        conn=db.connection, user_id=user_id, horizon_s=revocation_horizon_s(settings)
    )
    if row is None or row.deleted:
        return None
    state = state_from_row(row, settings=settings, clock=clock)
    await store_user_states(
        store, states=[state.fill(generation)], context_ttl_s=CONTEXT_TTL_S, loaded_ttl_ms=loaded_ttl_ms(settings)
    )
    return state


@dataclass(frozen=True, slots=True)
class UserState:
    """What PostgreSQL says about a user, in the shape the cache holds it."""

    user_id: str
    context: UserContext
    epoch_ms: int
    jtis: dict[str, int]
    sessions: dict[str, int]
    revocations: Revocations

    def revokes(self, principal: Principal, *, issued_ms: int) -> bool:
        """Whether PostgreSQL's revocations kill this token (epoch, jti or session)."""
        return self.revokes_token(jti=principal.jti, session_id=principal.session_id, issued_ms=issued_ms)

    def revokes_token(self, *, jti: str, session_id: str, issued_ms: int) -> bool:
        return issued_ms <= self.epoch_ms or jti in self.jtis or session_id in self.sessions

    def fill(self, generation: str) -> UserFill:
        """This state as a cache write that lands only if `generation` is still current."""
        return UserFill(user_id=self.user_id, context=self.context, revocations=self.revocations, generation=generation)


def state_from_row(row: UserStateRow, *, settings: Settings, clock: Clock) -> UserState:
    epoch_ms = row.epoch_ms or 0
    jtis = dict(zip(row.jtis or [], row.exp_ms or [], strict=True))
    sessions = dict(zip(row.sids or [], row.revoked_ms or [], strict=True))
    return UserState(
        user_id=str(row.id),
        context=UserContext(role=row.role, plan=row.plan, plan_end_ms=row.plan_end_ms or 0, status=row.status),
        epoch_ms=epoch_ms,
        jtis=jtis,
        sessions=sessions,
        revocations=revocations_at(
            settings=settings, now_ms=to_ms(clock.now()), epoch_ms=epoch_ms, sessions=sessions, jtis=jtis
        ),
    )


def revocation_horizon_s(settings: Settings) -> int:
    """How long after a session's revocation an access token of it can still be alive."""
    return settings.jwt_access_ttl + SKEW_MARGIN_S


def loaded_ttl_ms(settings: Settings) -> int:
    return min(LOADED_TTL_S, settings.jwt_access_ttl) * 1000


async def forget_user(*, store: Store, user_id: str) -> None:
    """After a committed change to a user's role, plan or status: drop the cached context so
    their next request reads PostgreSQL (run to completion even if the request is cancelled).
    If Redis fails, the entry expires within CONTEXT_TTL_S."""
    try:
        await run_to_completion(forget_user_context(store, user_id=user_id))
    except StoreUnavailable as exc:
        logger.warning(
            "could not drop the cached context of user {} ({!r}); retrying, and it expires within {} s regardless",
            user_id,
            exc,
            CONTEXT_TTL_S,
        )
        retry_in_background(
            lambda: forget_user_context(store, user_id=user_id),
            what=f"dropping the context of user {user_id}",
            for_s=CONTEXT_TTL_S,
        )


async def reference_changed(*, store: Store, catalog: CatalogHolder) -> Catalog:
    """After a committed change to roles/plans: bump the version (every worker reloads on
    its next request) and return this worker's reloaded catalog."""
    try:
        await run_to_completion(bump_catalog_version(store))
    except StoreUnavailable as exc:
        logger.warning("could not publish a reference change ({!r}); retrying in the background", exc)
        retry_in_background(lambda: bump_catalog_version(store), what="a reference-version bump", for_s=24 * 3600)
    return await catalog.reload()


async def current_catalog(*, store: Store, catalog: CatalogHolder) -> Catalog:
    """The catalog at the version Redis holds (for public reads such as /plans)."""
    try:
        version = await get_catalog_version(store)
    except StoreUnavailable:
        version = catalog.catalog.version  # public route: serve what we hold
        if version < 0:
            version = 0
    return await catalog.ensure(version=version)
