"""Erasing an account's keys (`maintenance purge-deleted`): its context, generation, token
epoch, revocation marker and denylist entries, its `api` counter, and the lockout keys of its
address (failures, locks, reservations, per-source entries). What is not named here holds no
personal value and expires on its own TTL."""

from __future__ import annotations

from dataclasses import dataclass, field

from manas360.store.client import Store

USER_POLICIES = ("api",)
SOURCE_SUFFIXES = ("fail", "lock", "pending")
"""The per-source keys under a login identity's source stem (store/lockout.py)."""


@dataclass(frozen=True, slots=True)
class Erased:
    """One account, as the purge found it: what its keys are named after."""

    user_id: str
    email: str
    session_ids: list[str] = field(default_factory=list)
    jtis: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


def key_names(store: Store, account: Erased) -> list[str]:
    keys = store.keys
    user_id, email = account.user_id, account.email
    names = [
        keys.user_context(user_id),
        keys.user_generation(user_id),
        keys.user_epoch(user_id),
        keys.revocations_loaded(user_id),
        *(keys.user_rate(user_id, policy) for policy in USER_POLICIES),
        *(keys.revoked_session(user_id, session_id) for session_id in account.session_ids),
        *(keys.revoked_jti(user_id, jti) for jti in account.jtis),
        keys.login_failures(email),
        keys.login_lock(email),
        keys.login_pending(email),
        keys.login_cleared(email),
    ]
    for source in account.sources:
        stem = keys.login_source(email, source)
        names.extend([stem, *(f"{stem}:{suffix}" for suffix in SOURCE_SUFFIXES)])
    return names


UNLINK_CHUNK = 10_000
"""Keys per UNLINK on a single node."""


async def erase_accounts(store: Store, *, accounts: list[Erased]) -> int:
    """UNLINK every key of these accounts in one pipelined round trip; how many existed. On a
    single node a few big UNLINKs; on a cluster one per hash tag (a user's keys share one, an
    address's lockout keys another), so no command spans two slots. Raises StoreUnavailable."""
    if store.cluster:
        groups = [group for account in accounts for group in _by_tag(key_names(store, account))]
    else:
        names = [name for account in accounts for name in key_names(store, account)]
        groups = [names[i : i + UNLINK_CHUNK] for i in range(0, len(names), UNLINK_CHUNK)]
    if not groups:
        return 0
    async with store.redis.pipeline(transaction=False) as pipe:
        for group in groups:
            pipe.execute_command("UNLINK", *group)  # a cluster pipeline's unlink() takes one key
        results = await pipe.execute()
    return sum(int(n) for n in results)


def _by_tag(names: list[str]) -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name[name.index("{") : name.index("}") + 1], []).append(name)
    return list(groups.values())
