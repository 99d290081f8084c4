"""Token introspection (RFC 7662) for the other services of the platform.

A service that verifies our access tokens with the published keys learns who and until when,
but not whether the session was revoked, the account disabled, or the role or plan changed
since. It asks here: the answer comes from the same Redis state as the API's own check (one
round trip; PostgreSQL only on a cold cache, then written back), so a token the API refuses
is `active: false` on the very next call, and nothing is counted against the user's limits.

Callers authenticate with a service key (INTROSPECTION_KEYS, `name:key`); every configured
key is compared in constant time, whichever matches.
"""

from __future__ import annotations

import hmac
from typing import Any

from manas360.clock import Clock
from manas360.db import Database
from manas360.errors import AppError
from manas360.models import ACCOUNT_ACTIVE
from manas360.security.jwt import AccessTokenCodec, token_issued_ms
from manas360.services.access.catalog import CatalogHolder
from manas360.services.access.entitlements import effective_plan, load_user_state
from manas360.settings import Settings
from manas360.store import Store
from manas360.store.entitlements import read_token_state

INACTIVE: dict[str, Any] = {"active": False}


def service_name(settings: Settings, authorization_header: str | None) -> str | None:
    """The name of the service whose key this `Authorization: Bearer <key>` carries, or None.
    Every configured key is compared (constant time each), so the time says nothing about
    which one, or how much of one, matched."""
    scheme, _, presented = (authorization_header or "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return None
    candidate = presented.strip().encode("utf-8", "replace")
    found = None
    for name, key in settings.introspection_keys_by_name.items():
        if hmac.compare_digest(candidate, key):
            found = name
    return found


async def introspect(
    *,
    db: Database,
    settings: Settings,
    store: Store,
    codec: AccessTokenCodec,
    catalog: CatalogHolder,
    clock: Clock,
    token: str,
) -> dict[str, Any]:
    """RFC 7662's answer for `token`: the claims and live role, plan and permissions of an
    unexpired, unrevoked access token of an active account; `{"active": false}` for anything
    else (a refresh token, an `mfa_token`, a mailed token, garbage) without saying why."""
    try:
        claims = codec.decode(token)
    except AppError:
        return INACTIVE
    user_id, session_id, jti = claims["sub"], claims["sid"], claims["jti"]
    issued_ms = token_issued_ms(claims)
    state, version = await read_token_state(store, user_id=user_id, session_id=session_id, jti=jti, issued_ms=issued_ms)
    context, revoked = state.context, state.revoked
    if context is None or not (state.loaded or revoked):
        try:
            loaded = await load_user_state(
                db=db, settings=settings, store=store, clock=clock, user_id=user_id, generation=state.generation
            )
        except AppError:  # the user no longer exists
            return INACTIVE
        context = loaded.context
        revoked = revoked or loaded.revokes_token(jti=jti, session_id=session_id, issued_ms=issued_ms)
    now_ms = state.now_ms or clock.now_ms()
    if revoked or context.status != ACCOUNT_ACTIVE or now_ms >= claims["exp"] * 1000:
        return INACTIVE
    current = catalog.at(version) or await catalog.ensure(version=version)
    return {
        "active": True,
        "sub": user_id,
        "sid": session_id,
        "exp": claims["exp"],
        "iat": claims["iat"],
        "auth_time": claims["auth_time"],
        "amr": claims["amr"],
        "aal": claims["aal"],
        "role": context.role,
        "plan": effective_plan(context, now_ms),
        "permissions": sorted(current.permissions_of(context.role)),
        "token_type": "Bearer",
        "iss": claims["iss"],
        "aud": claims["aud"],
    }
