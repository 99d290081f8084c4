"""The cached user context: role, plan, plan end and status, one small hash per user.

Written after a PostgreSQL read (cache miss) with a TTL, deleted after any write that
changes it (role, subscription). The TTL bounds how long an entry can be stale if Redis
was unreachable when a write tried to delete it.
"""

from __future__ import annotations

from dataclasses import dataclass

from store.client import Store
from store.revocations import SCRIPT as REVOCATIONS_SCRIPT, script_call as revocations_call

CONTEXT_FIELDS = ("role", "plan", "plan_end_ms", "status")


@dataclass(frozen=True, slots=True)
class UserContext:
    role: str
    plan: str
    plan_end_ms: int  # 0: open-ended
    status: str

    def as_mapping(self) -> dict[str, str | int]:
        return {"role": self.role, "plan": self.plan, "plan_end_ms": self.plan_end_ms, "status": self.status}


def context_from_reply(values: list) -> UserContext | None:
    """A context from HMGET-ordered values, or None when the entry is missing."""
    role, plan, plan_end_ms, status = values
    if not role or not plan:
        return None
    return UserContext(role=role, plan=plan, plan_end_ms=int(plan_end_ms or 0), status=status or "active")


async def forget_user_context(store: Store, *, user_id: str) -> None:
    await store.redis.delete(store.keys.user_context(user_id))


@dataclass(frozen=True, slots=True)
class RequestCheck:
    loaded: bool
    """False when Redis holds no complete copy of the user's revocations (cold cache)."""
    revoked: bool
    """True when Redis alone already proves the token revoked."""
    context: UserContext | None
    allowed: bool = True
    remaining: int = 0
    reset_s: int = 0


async def check_request(store: Store, *, user_id: str, session_id: str, jti: str, issued_ms: int,
                        api_limit: int, api_window_s: int) -> tuple[RequestCheck, int]:
    """One round trip: revocation state, user context and `api` verdict (store/request.lua),
    plus the reference-catalog version."""
    keys = store.keys
    reply, version = await store.run_script_and_get(
        "request",
        keys=[keys.revocations_loaded(user_id), keys.user_epoch(user_id), keys.revoked_jti(user_id, jti),
              keys.revoked_session(user_id, session_id), keys.user_context(user_id), keys.user_rate(user_id, "api")],
        args=[issued_ms, api_limit, api_window_s],
        get=keys.reference_version(),
    )
    version = int(version or 0)
    if reply[1]:
        return RequestCheck(loaded=bool(reply[0]), revoked=True, context=None), version
    loaded, _, role, plan, plan_end_ms, status, allowed, remaining, reset_s = reply
    context = context_from_reply([role, plan, plan_end_ms, status])
    return RequestCheck(loaded=bool(loaded), revoked=False, context=context, allowed=bool(allowed),
                        remaining=int(remaining), reset_s=int(reset_s)), version


async def store_user_states(store: Store, *, states: list, context_ttl_s: int, loaded_ttl_ms: int) -> None:
    """Write users' contexts and complete revocation copies in one pipeline: one user on a
    cache miss, a batch when warming.

    `states` holds (user_id, UserContext, Revocations) triples; most users have no
    revocations, so their "loaded" marker is a plain SET; the rest go through
    revocations.lua (loaded into Redis first, only when some user needs it).
    """
    keys = store.keys
    if any(_has_revocations(revocations) for _, _, revocations in states):
        await store.load_script(REVOCATIONS_SCRIPT)
    # On a cluster, redis-py splits the pipeline by node and sends the parts concurrently.
    async with store.redis.pipeline(transaction=False) as pipe:
        for user_id, context, revocations in states:
            ctx_key = keys.user_context(user_id)
            pipe.hset(ctx_key, mapping=context.as_mapping())
            pipe.expire(ctx_key, context_ttl_s)
            if not _has_revocations(revocations):
                pipe.set(keys.revocations_loaded(user_id), "1", px=loaded_ttl_ms)
                continue
            script_keys, args = revocations_call(keys, user_id=user_id, revocations=revocations,
                                                 loaded_ttl_ms=loaded_ttl_ms)
            store.queue_script(pipe, REVOCATIONS_SCRIPT, keys=script_keys, args=args)
        await pipe.execute()


def _has_revocations(revocations) -> bool:
    return bool(revocations.epoch_ms or revocations.jtis or revocations.sessions)
