"""Password hashing: bcrypt over an HMAC-SHA256 pre-hash (scheme `m360v1`).

bcrypt reads at most 72 bytes (bcrypt 5.0 raises beyond that) and stops at a NUL byte in
some implementations. A 128-character password can be up to 512 bytes of UTF-8, so we
never give bcrypt the password itself:

    prehash = base64(HMAC-SHA256(key=b"manas360-password-v1", msg=password.encode("utf-8")))
    stored  = "$m360v1$" + bcrypt.hashpw(prehash, bcrypt.gensalt(cost))

- every byte of every character counts: the 32-byte digest covers the whole input, so two
  passwords sharing their first 72 bytes still hash differently;
- a NUL inside the password is just input to HMAC, it cannot truncate anything;
- base64 makes the digest 44 ASCII bytes (< 72) with no NUL byte, which a raw digest may hold.

The `$m360v1$` prefix names the scheme, so a hash written any other way (for example a
plain bcrypt hash of the raw password) is recognisable: `verify_password` rejects it and
`needs_rehash` reports it. Length limits are the validator's job (`MIN_PASSWORD_CHARS`,
`MAX_PASSWORD_CHARS`); these functions hash whatever they are given.

bcrypt runs in a worker thread (one per process, see `_off_loop`): it releases the GIL and takes
~50-200 ms, which would otherwise stall every request on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar, TypeVarTuple

import bcrypt

MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 128

SCHEME_PREFIX = "$m360v1$"
_PREHASH_KEY = b"manas360-password-v1"
_dummy_hashes: dict[int, str] = {}


def _prehash(password: str) -> bytes:
    """Return the 44-byte base64 HMAC-SHA256 of the password (what bcrypt sees)."""
    digest = hmac.new(_PREHASH_KEY, password.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest)


def _bcrypt_part(password_hash: str) -> bytes | None:
    """Return the bcrypt hash inside a stored hash of the current scheme, else None."""
    if not password_hash.startswith(SCHEME_PREFIX):
        return None
    try:
        return password_hash[len(SCHEME_PREFIX) :].encode("ascii")
    except UnicodeEncodeError:
        return None


def _hash_sync(password: str, cost: int) -> str:
    """Hash synchronously (runs in a worker thread)."""
    return SCHEME_PREFIX + bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds=cost)).decode("ascii")


def _check_sync(password: str, hashed: bytes) -> bool:
    """Check synchronously (runs in a worker thread); a malformed hash is a mismatch."""
    try:
        # checkpw compares in constant time.
        return bcrypt.checkpw(_prehash(password), hashed)
    except ValueError:
        return False


async def hash_password(*, password: str, cost: int) -> str:
    """Hash a password with the current scheme at the given bcrypt cost."""
    return await _off_loop(_hash_sync, password, cost)


async def verify_password(*, password: str, password_hash: str) -> bool:
    """Return whether the password matches the stored hash; False for a malformed hash."""
    hashed = _bcrypt_part(password_hash)
    if hashed is None:
        return False
    return await _off_loop(_check_sync, password, hashed)


def _cost(hashed: bytes) -> int | None:
    """The bcrypt cost a hash was made at, None when it cannot be read."""
    parts = hashed.split(b"$")  # b"", b"2b", b"12", salt+digest
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    return int(parts[2])


def needs_rehash(*, password_hash: str, cost: int) -> bool:
    """Return True when the stored hash is of another scheme or another cost."""
    hashed = _bcrypt_part(password_hash)
    return hashed is None or _cost(hashed) != cost


async def harden_runtime(*, password: str, password_hash: str, cost: int) -> None:
    """After a failed check against `password_hash`, spend the bcrypt work it fell short of
    a check at `cost`, so a wrong password takes as long as an unknown email's dummy check
    (at `cost`) whatever the account's hash (Django's `harden_runtime`).

    A check costs 2**c rounds at cost c. A hash made at an older, lower cost `c0` (accounts
    that have not logged in since BCRYPT_COST went up) cost 2**c0: the difference,
    2**cost - 2**c0, is the sum of 2**k for k in c0..cost-1, so it is paid as one extra
    hash at each of those costs (a few hashes, not 2**(cost-c0) - 1 at the old cost). A
    hash verify_password could not use at all (another scheme, unreadable) cost nothing: a
    full dummy check. A hash at the current cost or above needs nothing (a higher one is
    upgraded, downwards, at the next login).
    """
    hashed = _bcrypt_part(password_hash)
    spent = _cost(hashed) if hashed is not None else None
    if spent is None or spent < 4:
        await verify_dummy(password=password, cost=cost)
    elif spent < cost:
        await _off_loop(_extra_work_sync, password, spent, cost)


def _extra_work_sync(password: str, spent: int, cost: int) -> None:
    """One hash at each cost from `spent` to `cost` - 1 (runs in a worker thread)."""
    prehash = _prehash(password)
    for extra in range(spent, cost):
        bcrypt.hashpw(prehash, bcrypt.gensalt(rounds=extra))


async def verify_dummy(*, password: str, cost: int) -> None:
    """Spend the time of a real verification, for logins whose email matched no user."""
    # Timing-attack defence: without this, an unknown email would answer in ~0 ms and a
    # known one after a full bcrypt check, so response times would enumerate accounts.
    # The dummy hash uses the same cost as real hashes so both paths take the same time;
    # it is computed once per cost (call this at start-up to keep that off a login).
    dummy = _dummy_hashes.get(cost)
    if dummy is None:
        dummy = await hash_password(password=secrets.token_urlsafe(32), cost=cost)
        _dummy_hashes[cost] = dummy
    await verify_password(password=password, password_hash=dummy)


# A few bcrypt threads per process (cores / workers, set by the app at start): a login
# storm keeps every core busy hashing yet leaves each worker's event loop its share of
# CPU, so gated requests stay fast beside it (with the default pool, six threads per worker
# hashed at once and starved the loops). Logins queue instead; throughput is cores-bound
# either way.
_bcrypt_threads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bcrypt")


def set_hashing_threads(count: int) -> None:
    """Size this process's bcrypt pool (call once, at start)."""
    global _bcrypt_threads
    _bcrypt_threads = ThreadPoolExecutor(max_workers=max(1, count), thread_name_prefix="bcrypt")


T = TypeVar("T")
Ts = TypeVarTuple("Ts")


async def _off_loop(function: Callable[[*Ts], T], *args: *Ts) -> T:
    return await asyncio.get_running_loop().run_in_executor(_bcrypt_threads, function, *args)
