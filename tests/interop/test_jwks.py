"""Signed with a key pair, checked by others: a real server with EdDSA keys, a verifier in a
separate process that knows only the JWKS URL, and a key rotation across two running
instances under load."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import subprocess
import sys
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from manas360.security.signing import generate_private_key, load_private_key
from tests.fixtures.accounts import API, PASSWORD, unique_email
from tests.fixtures.server import start_server

VERIFIER = Path(__file__).with_name("verifier.py")
OLD, NEW = generate_private_key("EdDSA", "old"), generate_private_key("EdDSA", "new")


def _keys_environ(environ: dict[str, str], *elements: dict[str, str], **extra: str) -> dict[str, str]:
    return {**environ, "JWT_ALGORITHM": "EdDSA", "JWT_PRIVATE_KEYS": json.dumps(list(elements)), **extra}


@pytest.fixture(scope="module")
def eddsa_server(environ, database, tmp_path_factory):
    server = start_server(_keys_environ(environ, OLD), workers=1, tmp_dir=tmp_path_factory.mktemp("jwks"))
    yield server
    server.stop()


def _register(url: str) -> dict:
    response = httpx.post(f"{url}{API}/auth/register", json={"email": unique_email("jwks"), "password": PASSWORD})
    assert response.status_code == 201, response.text
    return response.json()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_the_key_set_is_public_cacheable_and_unthrottled(eddsa_server):
    response = httpx.get(f"{eddsa_server.url}/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    assert "ratelimit" not in response.headers
    (key,) = response.json()["keys"]
    assert {key["kid"], key["alg"], key["use"], key["kty"], key["crv"]} == {"old", "EdDSA", "sig", "OKP", "Ed25519"}
    assert "d" not in key


def test_a_verifier_that_knows_only_the_jwks_url_accepts_ours_and_refuses_forgeries(eddsa_server):
    pair = _register(eddsa_server.url)
    ours = pair["access_token"]
    header = jwt.get_unverified_header(ours)
    claims = jwt.decode(ours, options={"verify_signature": False})
    public_pem = load_private_key("old", OLD["pem"]).public.public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{_b64(json.dumps({**header, 'alg': 'HS256'}).encode())}.{_b64(json.dumps(claims).encode())}"
    confusion = f"{signing_input}.{_b64(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())}"
    forger = load_private_key("old", generate_private_key("EdDSA", "old")["pem"])  # our kid, not our key
    tokens = {
        "ours": ours,
        "a key not in the set": jwt.encode(
            claims, forger.private, algorithm="EdDSA", headers={"kid": "elsewhere", "typ": "at+jwt"}
        ),
        "our kid, another key": jwt.encode(claims, forger.private, algorithm="EdDSA", headers=header),
        "alg confusion (HS256 over the public key)": confusion,
        "alg none": f"{_b64(json.dumps({**header, 'alg': 'none'}).encode())}.{_b64(json.dumps(claims).encode())}.",
    }
    done = subprocess.run(
        [sys.executable, str(VERIFIER), f"{eddsa_server.url}/.well-known/jwks.json", "manas360", "manas360-api"],
        input="\n".join(tokens.values()) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    verdicts = dict(zip(tokens, done.stdout.splitlines(), strict=True))
    assert verdicts.pop("ours") == f"accepted {pair['user']['id']}"
    assert all(verdict.startswith("refused") for verdict in verdicts.values()), verdicts
    # The server itself refuses each forgery as the API says: 401 InvalidToken.
    for name in verdicts:
        response = httpx.get(f"{eddsa_server.url}{API}/me", headers={"authorization": f"Bearer {tokens[name]}"})
        assert (response.status_code, response.json()["error"]) == (401, "InvalidToken"), name


async def test_keys_rotate_across_two_running_instances_under_load_without_a_failed_request(
    environ, database, tmp_path_factory
):
    """The documented three steps, one instance at a time as a rolling deploy does: publish the
    new key everywhere, then sign with it everywhere, then (after the access-token lifetime)
    drop the old one. Clients refresh on one instance and call the other with the new token."""
    ttl = 3
    tmp = tmp_path_factory.mktemp("rotation")
    env = {**environ, "JWT_ACCESS_TTL": str(ttl)}
    steps = [("published", (OLD, NEW)), ("signing new", (NEW, OLD)), ("old dropped", (NEW,))]
    servers = [await asyncio.to_thread(start_server, _keys_environ(env, OLD), workers=1, tmp_dir=tmp) for _ in range(2)]
    up = [True, True]
    answers: list[tuple[str, int, str]] = []  # (phase, status, kid of the token used)
    phase = "before"
    stop = asyncio.Event()

    async def client_loop() -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            pair = await _call(
                client, "post", f"{API}/auth/register", json={"email": unique_email("rotate"), "password": PASSWORD}
            )
            refresh = pair.json()["refresh_token"]
            while not stop.is_set():
                rotated = await _call(client, "post", f"{API}/auth/refresh", json={"refresh_token": refresh})
                assert rotated.status_code == 200, rotated.text
                refresh, access = rotated.json()["refresh_token"], rotated.json()["access_token"]
                me = await _call(client, "get", f"{API}/me", headers={"authorization": f"Bearer {access}"})
                answers.append((phase, me.status_code, jwt.get_unverified_header(access)["kid"]))

    async def _call(client: httpx.AsyncClient, method: str, path: str, **kwargs) -> httpx.Response:
        # A load balancer: any instance that is up, the other one if a connection is refused.
        for _ in range(50):
            live = [server for server, is_up in zip(servers, up, strict=True) if is_up]
            server = random.choice(live)
            try:
                return await client.request(method, server.url + path, **kwargs)
            except httpx.TransportError:
                await asyncio.sleep(0.05)
        raise AssertionError("no instance answered")

    async def restart(index: int, keys: tuple[dict[str, str], ...]) -> None:
        up[index] = False
        await asyncio.sleep(0.2)  # the balancer stops sending before the drain, as a deploy does
        assert await asyncio.to_thread(servers[index].stop) == 0
        servers[index] = await asyncio.to_thread(start_server, _keys_environ(env, *keys), workers=1, tmp_dir=tmp)
        up[index] = True

    loops = [asyncio.create_task(client_loop()) for _ in range(6)]
    try:
        await asyncio.sleep(1)
        for name, keys in steps:
            if name == "old dropped":  # every token the old key signed has expired by now
                await asyncio.sleep(ttl + 1)
            for index in (0, 1):
                phase = f"{name}: instance {index} changing"
                await restart(index, keys)
                await asyncio.sleep(0.7)
            phase = f"{name}: done"
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.gather(*loops, return_exceptions=True)
        for server in servers:
            await asyncio.to_thread(server.stop)
    for loop in loops:
        assert loop.exception() is None, loop.exception()
    failed = [answer for answer in answers if answer[1] != 200]
    assert failed == [], f"{len(failed)} of {len(answers)} requests failed: {failed[:5]}"
    # The interesting window was exercised: tokens of the new key checked while only part of
    # the fleet signed with it, and tokens of the old key while it was still accepted.
    kids_by_phase = {(answer[0], answer[2]) for answer in answers}
    assert ("signing new: instance 0 changing", "new") in kids_by_phase  # instance 0 signs new...
    assert ("signing new: instance 0 changing", "old") in kids_by_phase  # ...instance 1 still old
    assert all(kid == "new" for phase_name, kid in kids_by_phase if phase_name.startswith("old dropped"))
    assert len(answers) > 100
