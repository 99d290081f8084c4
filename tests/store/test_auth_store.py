"""tests/auth/test_store.py (revocations, the per-request check), run again at the
store level on both backends, single node and cluster.

Those tests reach the store through the app (`app.ctx.deps.store`) and read keys back with
`redis_raw`; here both stand for the parametrized `store` alone.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.auth.test_store import (  # noqa: F401  (collected here as well)
    test_a_cold_user_is_not_loaded_and_not_yet_revoked,
    test_a_denylisted_session_is_revoked_even_before_the_user_is_loaded,
    test_recording_a_revocation_does_not_claim_the_cache_is_complete,
    test_the_epoch_kills_tokens_issued_at_or_before_it_to_the_millisecond,
    test_the_epoch_never_moves_back,
)


@pytest.fixture
def app(store):
    return SimpleNamespace(ctx=SimpleNamespace(deps=SimpleNamespace(store=store)))


@pytest.fixture
def redis_raw(store):
    return store.redis
