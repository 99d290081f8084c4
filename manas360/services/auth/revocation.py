"""Revocations reach Redis only after PostgreSQL committed them.

Every revocation (logout, logout-all, password change, deleted session, reuse, admin)
commits to PostgreSQL first, then calls `publish`. If Redis fails at that moment, nothing
is lost, and a stale "not revoked" answer is bounded:

- the request answers 503, and a background repair (manas360.after_commit) retries
  the same write, 0.5 s and then doubling up to 60 s apart, for LOADED_TTL_S: once Redis
  answers again the revocation applies within seconds, on every worker;
- whatever happens to that worker, the user's "revocations loaded" marker that could make
  the old Redis state look complete was written before the commit and expires within
  LOADED_TTL_S; the next check after that re-reads PostgreSQL, which has the revocation.

TTLs: a jti entry lives as long as its token; a session entry and the epoch live
JWT_ACCESS_TTL + SKEW_MARGIN_S, the longest any access token issued before them can live.
"""

from __future__ import annotations

from collections.abc import Iterable

from manas360.after_commit import retry_in_background
from manas360.settings import Settings
from manas360.store import Store, StoreUnavailable
from manas360.store.revocations import Revocations, record_revocations

SKEW_MARGIN_S = 60
LOADED_TTL_S = 300


def revocations_at(
    *,
    settings: Settings,
    now_ms: int,
    epoch_ms: int = 0,
    sessions: dict[str, int] | None = None,
    jtis: dict[str, int] | None = None,
) -> Revocations:
    """Revocations with their remaining lifetimes at `now_ms`.

    `sessions` maps a session id to when it was revoked (ms), `jtis` a jti to its token's
    `exp` (ms); entries whose tokens can no longer be alive are left out.
    """
    life_ms = (settings.jwt_access_ttl + SKEW_MARGIN_S) * 1000
    return Revocations(
        epoch_ms=epoch_ms,
        epoch_ttl_ms=max(0, epoch_ms + life_ms - now_ms) if epoch_ms else 0,
        jtis={jti: exp_ms - now_ms + 1000 for jti, exp_ms in (jtis or {}).items() if exp_ms > now_ms},
        sessions={sid: at_ms + life_ms - now_ms for sid, at_ms in (sessions or {}).items() if at_ms + life_ms > now_ms},
    )


async def publish(
    store: Store,
    *,
    settings: Settings,
    user_id: str,
    now_ms: int,
    epoch_ms: int = 0,
    session_ids: Iterable[str] = (),
    jtis: dict[str, int] | None = None,
) -> None:
    """Write committed revocations to Redis; on failure schedule a repair and re-raise (503)."""
    revocations = revocations_at(
        settings=settings, now_ms=now_ms, epoch_ms=epoch_ms, sessions={sid: now_ms for sid in session_ids}, jtis=jtis
    )
    try:
        await record_revocations(store, user_id=user_id, revocations=revocations)
    except StoreUnavailable:
        retry_in_background(
            lambda: record_revocations(store, user_id=user_id, revocations=revocations),
            what=f"revocations of user {user_id}",
            for_s=LOADED_TTL_S,
        )
        raise
