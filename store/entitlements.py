"""The cached user context: role, plan, plan end and status, one small hash per user.

Written after a PostgreSQL read (cache miss, warm-cache) with a TTL, dropped after any
write that changes it (role, subscription, status). The TTL bounds how long an entry can
be stale if Redis was unreachable when a write tried to drop it.

Fills never overwrite a newer invalidation: every invalidation bumps the user's cache
generation (store/forget.lua), a writer reads the generation BEFORE it reads PostgreSQL,
and the write (store/fill.lua) only lands if the generation is still the same. A fill
that read PostgreSQL before a demotion committed therefore cannot resurrect the old role
after the demotion dropped the entry.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from redis.exceptions import NoScriptError

from manas360.store.client import ScriptArg, Store, reply_int, reply_items
from manas360.store.keys import Keys
from manas360.store.revocations import SCRIPT as REVOCATIONS_SCRIPT
from manas360.store.revocations import Revocations
from manas360.store.revocations import script_call as revocations_call

CONTEXT_FIELDS = ("role", "plan", "plan_end_ms", "status")
GENERATION_TTL_S = 86_400
"""How long a bumped generation is remembered: far longer than any fill can take."""
NO_GENERATION = "0"
"""The generation of a user whose context was never invalidated (or forgotten by Redis)."""
_FILL, _FORGET, _REQUEST, _RATELIMIT, _INTROSPECT = "fill", "forget", "request", "ratelimit", "introspect"


# Values built on every gated request are NamedTuples, not frozen dataclasses: immutable
# all the same, at less than half the cost to build (a frozen dataclass sets each field
# through object.__setattr__; ~6 us a request over the hot path's values, measured).
class UserContext(NamedTuple):
    role: str
    plan: str
    plan_end_ms: int  # 0: open-ended
    status: str


def context_from_reply(
    role: str | None, plan: str | None, plan_end_ms: str | None, status: str | None
) -> UserContext | None:
    """A context from the HMGET-ordered values, or None when the entry is missing."""
    if not role or not plan:
        return None
    return UserContext(role, plan, int(plan_end_ms or 0), status or "active")


@dataclass(frozen=True, slots=True)
class UserFill:
    """What a writer read from PostgreSQL about one user, and the generation it saw before."""

    user_id: str
    context: UserContext
    revocations: Revocations
    generation: str = NO_GENERATION


async def forget_user_context(store: Store, *, user_id: str) -> None:
    """Drop the user's cached context and bump their generation (one atomic script)."""
    keys = store.keys
    await store.run_script(
        _FORGET, keys=[keys.user_context(user_id), keys.user_generation(user_id)], args=[GENERATION_TTL_S]
    )


async def read_generations(store: Store, *, user_ids: list[str]) -> dict[str, str]:
    """Each user's cache generation, read before their state is read from PostgreSQL."""
    if not user_ids:
        return {}
    async with store.redis.pipeline(transaction=False) as pipe:
        for user_id in user_ids:
            pipe.get(store.keys.user_generation(user_id))
        values = await pipe.execute()
    return {user_id: value or NO_GENERATION for user_id, value in zip(user_ids, values, strict=True)}


class ClientLimit(NamedTuple):
    """The client's per-IP limit (`global`), checked in the same round trip as the user's."""

    key: str
    limit: int
    window_s: int


class LimitPolicy(Protocol):
    """What the store needs of a rate policy (the edge's policy table holds more)."""

    @property
    def name(self) -> str: ...

    @property
    def limit(self) -> int: ...

    @property
    def window_s(self) -> int: ...


P = TypeVar("P", bound=LimitPolicy)


class ClientCheck(NamedTuple, Generic[P]):
    """The per-IP limit the edge left to the guard, so that it rides in the user's round trip."""

    policy: P
    key: str
    """The Redis key the client is counted under."""
    log_key: str
    """What rate_limit_logs records for it ("ip:<address>")."""


class LimitReply(NamedTuple):
    """A sliding-window verdict as the limiter script answers it."""

    allowed: bool
    remaining: int
    reset_s: int


class RequestCheck(NamedTuple):
    loaded: bool
    """False when Redis holds no complete copy of the user's revocations (cold cache)."""
    revoked: bool
    """True when Redis alone already proves the token revoked."""
    context: UserContext | None
    allowed: bool = True
    remaining: int = 0
    reset_s: int = 0
    generation: str = NO_GENERATION
    """The user's cache generation, read in the same round trip when the context missed."""
    client: LimitReply | None = None
    """The client's per-IP verdict, when a ClientLimit was given. When it refuses (single
    node), nothing of the user was read or counted and the fields above are defaults."""
    now_ms: int = 0
    """Redis's clock when the script ran (0 when the token was revoked or the client refused):
    the shared clock time-bound rules on the hot path are decided by."""


async def check_request(
    store: Store,
    *,
    user_id: str,
    session_id: str,
    jti: str,
    issued_ms: int,
    api_limit: int,
    api_window_s: int,
    client_limit: ClientLimit | None = None,
) -> tuple[RequestCheck, int]:
    """One round trip: the client's per-IP limit (if given, checked first), revocation
    state, user context and `api` verdict (store/request.lua), and the reference-catalog
    version.

    Single node: all of it is one script call. On a cluster the version and the per-IP
    key live in other slots than the user's keys, so they are separate commands sent at
    the same time (the user's script then counts `api` even when the per-IP limit refuses,
    and a failure of either fails the call: the service's edge therefore keeps the per-IP
    limit to itself on a cluster, where it fails open, and passes no `client_limit`).
    """
    if not store.cluster:
        # The same token from the same client sends the same bytes every time: packed once.
        call: tuple[Any, ...] = (user_id, session_id, jti, issued_ms, api_limit, api_window_s)
        if client_limit is not None:
            call += client_limit
        raw = await store.run_script_prepared(_REQUEST, call, _single_node_call)
        reply = reply_items(raw, 15, script=_REQUEST)
        version: object = reply[13]
    else:
        keys = store.keys
        user_keys = _user_keys(keys, user_id, session_id, jti)
        args: list[ScriptArg] = [issued_ms, api_limit, api_window_s]
        # Both (or all three) calls are issued before either is awaited: one flush per node.
        user_call = store.run_script_and_get(_REQUEST, keys=user_keys, args=args, get=keys.catalog_version())
        if client_limit is None:
            (script_reply, version), client_reply = await user_call, None
        else:
            (script_reply, version), client_reply = await asyncio.gather(
                user_call,
                store.run_script(
                    _RATELIMIT, keys=[client_limit.key], args=[client_limit.limit, client_limit.window_s, 1]
                ),
            )
        reply = reply_items(script_reply, 15, script=_REQUEST)
        if client_reply is not None:
            reply[10:13] = reply_items(client_reply, 3, script=_RATELIMIT)
    return request_check_from_reply(reply, client_checked=client_limit is not None), reply_int(version)


class TokenState(NamedTuple):
    """What Redis holds about one token and its user (store/introspect.lua): `check_request`
    without the rate limits."""

    loaded: bool
    revoked: bool
    context: UserContext | None
    generation: str
    now_ms: int


async def read_token_state(
    store: Store, *, user_id: str, session_id: str, jti: str, issued_ms: int
) -> tuple[TokenState, int]:
    """Revocation state and user context of a token, and the reference-catalog version, in
    one round trip, counting nothing (introspection)."""
    keys = store.keys
    user_keys = [
        keys.revocations_loaded(user_id),
        keys.user_epoch(user_id),
        keys.revoked_jti(user_id, jti),
        keys.revoked_session(user_id, session_id),
        keys.user_context(user_id),
        keys.user_generation(user_id),
    ]
    if not store.cluster:
        raw = await store.run_script(_INTROSPECT, keys=[*user_keys, keys.catalog_version()], args=[issued_ms])
        reply = reply_items(raw, 9, script=_INTROSPECT)
        version: object = reply[8]
    else:
        raw, version = await store.run_script_and_get(
            _INTROSPECT, keys=user_keys, args=[issued_ms], get=keys.catalog_version()
        )
        reply = reply_items(raw, 9, script=_INTROSPECT)
    loaded, revoked, role, plan, plan_end_ms, status, generation, now_ms, _ = reply
    return (
        TokenState(
            bool(loaded),
            bool(revoked),
            context_from_reply(role, plan, plan_end_ms, status),
            generation or NO_GENERATION,
            int(now_ms or 0),
        ),
        reply_int(version),
    )


def _user_keys(keys: Keys, user_id: str, session_id: str, jti: str) -> list[str]:
    """request.lua's KEYS[1..7], all in the user's hash slot."""
    return [
        keys.revocations_loaded(user_id),
        keys.user_epoch(user_id),
        keys.revoked_jti(user_id, jti),
        keys.revoked_session(user_id, session_id),
        keys.user_context(user_id),
        keys.user_rate(user_id, "api"),
        keys.user_generation(user_id),
    ]


def _single_node_call(keys: Keys, call: tuple[Any, ...]) -> tuple[list[str], list[ScriptArg]]:
    """request.lua's keys and arguments on a single node, from check_request's `call`:
    (user_id, session_id, jti, issued_ms, api_limit, api_window_s[, client key, limit, window_s])."""
    user_id, session_id, jti, issued_ms, api_limit, api_window_s = call[:6]
    built = [*_user_keys(keys, user_id, session_id, jti), keys.catalog_version()]
    args: list[ScriptArg] = [issued_ms, api_limit, api_window_s]
    if len(call) > 6:
        client_key, client_limit, client_window_s = call[6:]
        built.append(client_key)
        args += [client_limit, client_window_s]
    return built, args


def request_check_from_reply(reply: list[Any], *, client_checked: bool) -> RequestCheck:
    """A RequestCheck from request.lua's 15 items (the version, item 14, is the caller's)."""
    (
        loaded,
        revoked,
        role,
        plan,
        plan_end_ms,
        status,
        allowed,
        remaining,
        reset_s,
        generation,
        client_allowed,
        client_remaining,
        client_reset_s,
        _,
        now_ms,
    ) = reply
    # Positional: a NamedTuple built from keywords costs twice as much, on every request.
    client = LimitReply(bool(client_allowed), int(client_remaining), int(client_reset_s)) if client_checked else None
    return RequestCheck(
        bool(loaded),
        bool(revoked),
        context_from_reply(role, plan, plan_end_ms, status),
        bool(allowed),
        int(remaining),
        int(reset_s),
        generation or NO_GENERATION,
        client,
        int(now_ms or 0),
    )


async def store_user_states(
    store: Store, *, states: list[UserFill], context_ttl_s: int, loaded_ttl_ms: int, ttl_spread: float = 0.0
) -> None:
    """Write users' contexts and complete revocation copies in one pipeline: one user on a
    cache miss, a batch when warming.

    `ttl_spread` (0 to 1): each user's two TTLs are cut by the same random share of up to
    this much. A warm-up writes many users within seconds; with full TTLs they would all
    expire within the same seconds too, and every one of their next requests would reload
    from PostgreSQL at once. Shorter is always safe: the TTLs bound how long an entry may
    outlive a lost invalidation, and an entry gone early only costs its user one query.

    Each context goes through fill.lua (written only if the user's generation is still the
    one the writer saw before reading PostgreSQL). Most users have no revocations, so their
    "loaded" marker is a plain SET; the rest go through revocations.lua. Revocations are
    only ever added, so writing them from an older read is harmless.
    """
    ttls = _spread_ttls(len(states), context_ttl_s=context_ttl_s, loaded_ttl_ms=loaded_ttl_ms, spread=ttl_spread)
    try:
        await _write_states(store, states=states, ttls=ttls)
    except NoScriptError:
        # Redis restarted or flushed its scripts: load them and write again (every write
        # here is idempotent). Loading up front would cost every cache miss a round trip.
        await store.load_script(_FILL)
        await store.load_script(REVOCATIONS_SCRIPT)
        await _write_states(store, states=states, ttls=ttls)


def _spread_ttls(count: int, *, context_ttl_s: int, loaded_ttl_ms: int, spread: float) -> list[tuple[int, int]]:
    """(context TTL in s, loaded-marker TTL in ms) for each of `count` users: the full TTLs,
    or each pair cut by one random share of up to `spread`."""
    if not 0.0 <= spread < 1.0:
        raise ValueError(f"ttl_spread must be in [0, 1), not {spread}")
    if not spread:
        return [(context_ttl_s, loaded_ttl_ms)] * count
    scales = (1.0 - spread * random.random() for _ in range(count))
    return [(max(1, int(context_ttl_s * scale)), max(1, int(loaded_ttl_ms * scale))) for scale in scales]


async def _write_states(store: Store, *, states: list[UserFill], ttls: list[tuple[int, int]]) -> None:
    keys = store.keys
    # On a cluster, redis-py splits the pipeline by node and sends the parts concurrently.
    async with store.redis.pipeline(transaction=False) as pipe:
        for state, (context_ttl_s, loaded_ttl_ms) in zip(states, ttls, strict=True):
            user_id, context, revocations = state.user_id, state.context, state.revocations
            store.queue_script(
                pipe,
                _FILL,
                keys=[keys.user_context(user_id), keys.user_generation(user_id)],
                args=[state.generation, context_ttl_s, context.role, context.plan, context.plan_end_ms, context.status],
            )
            if not _has_revocations(revocations):
                pipe.set(keys.revocations_loaded(user_id), "1", px=loaded_ttl_ms)
                continue
            script_keys, args = revocations_call(
                keys, user_id=user_id, revocations=revocations, loaded_ttl_ms=loaded_ttl_ms
            )
            store.queue_script(pipe, REVOCATIONS_SCRIPT, keys=script_keys, args=args)
        await pipe.execute()


def _has_revocations(revocations: Revocations) -> bool:
    return bool(revocations.epoch_ms or revocations.jtis or revocations.sessions)
