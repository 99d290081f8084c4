import asyncio

import bcrypt

from manas360.security.passwords import (
    MAX_PASSWORD_CHARS,
    MIN_PASSWORD_CHARS,
    SCHEME_PREFIX,
    hash_password,
    needs_rehash,
    verify_dummy,
    verify_password,
)

COST = 4


async def test_round_trip_verifies_and_uses_scheme_prefix():
    stored = await hash_password(password="correct horse battery", cost=COST)
    assert stored.startswith(SCHEME_PREFIX + "$2b$04$")
    assert await verify_password(password="correct horse battery", password_hash=stored)


async def test_wrong_password_does_not_verify():
    stored = await hash_password(password="correct horse battery", cost=COST)
    assert not await verify_password(password="correct horse batterY", password_hash=stored)


async def test_passwords_sharing_first_72_bytes_do_not_verify_each_other():
    first, second = "a" * 99 + "1", "a" * 99 + "2"
    stored = await hash_password(password=first, cost=COST)
    assert await verify_password(password=first, password_hash=stored)
    assert not await verify_password(password=second, password_hash=stored)


async def test_embedded_nul_is_not_a_truncation():
    stored = await hash_password(password="prefix-0123\x00suffix", cost=COST)
    assert not await verify_password(password="prefix-0123", password_hash=stored)
    assert await verify_password(password="prefix-0123\x00suffix", password_hash=stored)


async def test_max_length_multibyte_password_round_trips():
    password = "🔐" * MAX_PASSWORD_CHARS  # 512 bytes of UTF-8
    stored = await hash_password(password=password, cost=COST)
    assert await verify_password(password=password, password_hash=stored)
    assert not await verify_password(password=password[:-1] + "🔑", password_hash=stored)


def test_length_limits():
    assert (MIN_PASSWORD_CHARS, MAX_PASSWORD_CHARS) == (10, 128)


async def test_needs_rehash_on_cost_change():
    stored = await hash_password(password="correct horse battery", cost=COST)
    assert not needs_rehash(password_hash=stored, cost=COST)
    assert needs_rehash(password_hash=stored, cost=5)


def test_needs_rehash_for_other_scheme_or_garbage():
    plain_bcrypt = bcrypt.hashpw(b"correct horse battery", bcrypt.gensalt(rounds=COST)).decode()
    assert needs_rehash(password_hash=plain_bcrypt, cost=COST)
    assert needs_rehash(password_hash="", cost=COST)
    assert needs_rehash(password_hash=SCHEME_PREFIX + "garbage", cost=COST)


async def test_malformed_hash_is_false_not_an_error():
    for bad in ("", "garbage", SCHEME_PREFIX, SCHEME_PREFIX + "$2b$04$short", SCHEME_PREFIX + "é"):
        assert not await verify_password(password="correct horse battery", password_hash=bad)


async def test_hash_of_another_scheme_does_not_verify():
    plain_bcrypt = bcrypt.hashpw(b"correct horse battery", bcrypt.gensalt(rounds=COST)).decode()
    assert not await verify_password(password="correct horse battery", password_hash=plain_bcrypt)


async def test_verify_does_not_block_the_event_loop():
    stored = await hash_password(password="correct horse battery", cost=10)  # ~50 ms per check
    ticks = 0
    done = asyncio.Event()

    async def ticker():
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    async def verify_two():
        try:
            return await asyncio.gather(
                verify_password(password="correct horse battery", password_hash=stored),
                verify_password(password="wrong horse battery", password_hash=stored),
            )
        finally:
            done.set()

    results, _ = await asyncio.gather(verify_two(), ticker())
    assert results == [True, False]
    assert ticks >= 5


async def test_verify_dummy_runs_and_reuses_its_hash():
    assert await verify_dummy(password="anything at all", cost=COST) is None
    assert await verify_dummy(password="anything else", cost=COST) is None
