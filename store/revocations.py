"""Revoked access tokens in Redis: per-jti and per-session denylist entries and a per-user
token epoch, each with a TTL no longer than the tokens it kills can live.

PostgreSQL holds the same facts (revoked_access_tokens, sessions.revoked_at,
user_accounts.tokens_valid_after); Redis is their cache, so writing here only ever adds
revocations or moves the epoch forward, never removes one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from manas360.store.client import ScriptArg, Store
from manas360.store.keys import Keys

SCRIPT = "revocations"


@dataclass(frozen=True, slots=True)
class Revocations:
    """One user's revocations with their remaining lifetimes (ms)."""

    epoch_ms: int = 0
    epoch_ttl_ms: int = 0
    jtis: dict[str, int] = field(default_factory=dict)
    sessions: dict[str, int] = field(default_factory=dict)


async def record_revocations(store: Store, *, user_id: str, revocations: Revocations) -> None:
    """Add revocations (the epoch only moves forward); the loaded marker is left as it is."""
    await _write(store, user_id=user_id, revocations=revocations, loaded_ttl_ms=0)


async def _write(store: Store, *, user_id: str, revocations: Revocations, loaded_ttl_ms: int) -> None:
    keys, args = script_call(store.keys, user_id=user_id, revocations=revocations, loaded_ttl_ms=loaded_ttl_ms)
    await store.run_script(SCRIPT, keys=keys, args=args)


def script_call(
    keys: Keys, *, user_id: str, revocations: Revocations, loaded_ttl_ms: int
) -> tuple[list[str], list[ScriptArg]]:
    """KEYS and ARGV of revocations.lua for one user: every key on the user's hash tag, so
    the script touches one slot however many tokens it records."""
    entries = [(keys.revoked_jti(user_id, jti), ttl) for jti, ttl in revocations.jtis.items()]
    entries += [(keys.revoked_session(user_id, sid), ttl) for sid, ttl in revocations.sessions.items()]
    return (
        [keys.user_epoch(user_id), keys.revocations_loaded(user_id), *(key for key, _ in entries)],
        [revocations.epoch_ms, revocations.epoch_ttl_ms, loaded_ttl_ms, *(ttl for _, ttl in entries)],
    )
