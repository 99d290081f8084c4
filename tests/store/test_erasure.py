"""Erasing an account's keys, on a single node and on a cluster (keys of one user share a
slot; an address's lockout keys another; a batch spans many slots)."""

from __future__ import annotations

from uuid import uuid4

from manas360.store.erasure import Erased, erase_accounts, key_names


async def test_every_key_of_the_accounts_goes_and_no_other(store):
    accounts = [
        Erased(
            user_id=str(uuid4()),
            email=f"gone-{n}@example.com",
            session_ids=[str(uuid4())],
            jtis=[str(uuid4())],
            sources=["198.51.100.7"],
        )
        for n in range(3)
    ]
    kept = store.keys.user_context(str(uuid4()))
    names = [name for account in accounts for name in key_names(store, account)]
    for name in [*names, kept]:
        await store.redis.set(name, "x")
    assert await erase_accounts(store, accounts=accounts) == len(names)
    assert [await store.redis.exists(name) for name in names] == [0] * len(names)
    assert await store.redis.exists(kept) == 1
    assert await erase_accounts(store, accounts=accounts) == 0
