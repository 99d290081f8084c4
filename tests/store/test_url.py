"""REDIS_URL: one parsed configuration for every connection (store/url.py).

Against private redis-servers (tests/fixtures/services.py): one TLS-only (no plain-text
port at all), one plain; both require a password full of URL metacharacters and also
listen on a unix socket. Every test goes through `open_store`, so the pool (plain
commands) and the pipelined fast connection (per-request scripts) are both exercised.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import quote
from uuid import uuid4

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from manas360.store import ratelimit
from manas360.store.client import close_store, open_store, ping
from manas360.store.url import parse_redis_url
from tests.fixtures.redis_cluster import start_redis_cluster
from tests.fixtures.services import redis_server
from tests.fixtures.tls import make_certificates

PASSWORD = "p@ss%w:rd/1"  # '@', '%', ':' and '/' must be percent-encoded in a URL
AUTH = f":{quote(PASSWORD, safe='')}@"


@pytest.fixture(scope="module")
def certificates():
    with tempfile.TemporaryDirectory(prefix="m360-tls-") as directory:
        yield make_certificates(Path(directory))


@pytest.fixture(scope="module")
def tls_server(certificates):
    with redis_server(tls=certificates, extra_args=("--requirepass", PASSWORD)) as server:
        yield server


@pytest.fixture(scope="module")
def plain_server():
    with redis_server(extra_args=("--requirepass", PASSWORD)) as server:
        yield server


@pytest.fixture
async def admin(plain_server):
    """A client of our own on the plain server (db 3), for assertions."""
    client = Redis(host="127.0.0.1", port=plain_server.port, password=PASSWORD, db=3, decode_responses=True)
    yield client
    await client.flushall()
    await client.aclose()


async def _use_both_paths(store) -> str:
    """A plain command on the pool and a per-request script on the fast connection; the key prefix."""
    await store.redis.set(store.keys.prefix + "pool", "1")
    verdict = await ratelimit.hit(store, policy="t", key=store.keys.prefix + "fast", limit=5, window_s=60)
    assert verdict.allowed
    return store.keys.prefix


async def test_rediss_url_encrypts_the_pool_and_the_fast_connection(tls_server, certificates):
    url = f"rediss://{AUTH}127.0.0.1:{tls_server.port}/0?ssl_ca_certs={certificates.ca}"
    store = open_store(url=url, prefix=f"t{uuid4().hex[:6]}:")
    try:
        prefix = await _use_both_paths(store)
        assert await store.redis.exists(prefix + "pool", prefix + "fast") == 2
        # The server has no plain-text port: the fast path got here over TLS, verified.
        assert store.fast._protocol._transport.get_extra_info("ssl_object") is not None
    finally:
        await close_store(store)


async def test_rediss_url_against_a_plain_server_fails_and_never_sends_auth_in_clear(plain_server, certificates, admin):
    auths_before = await _auth_calls(admin)
    url = f"rediss://{AUTH}127.0.0.1:{plain_server.port}/0?ssl_ca_certs={certificates.ca}"
    store = open_store(url=url, prefix=f"t{uuid4().hex[:6]}:", connect_timeout_s=0.5, socket_timeout_s=0.5)
    try:
        with pytest.raises(RedisError):
            await ratelimit.hit(store, policy="t", key=store.keys.prefix + "fast", limit=5, window_s=60)
        with pytest.raises(RedisError):
            await store.redis.set(store.keys.prefix + "pool", "1")
    finally:
        await close_store(store)
    assert await _auth_calls(admin) == auths_before, "a rediss:// client sent AUTH to a plain-text port"


async def test_a_certificate_from_another_ca_is_refused_by_both_paths(tls_server):
    with tempfile.TemporaryDirectory(prefix="m360-tls-") as directory:
        other = make_certificates(Path(directory), name="other")
        url = f"rediss://{AUTH}127.0.0.1:{tls_server.port}/0?ssl_ca_certs={other.ca}"
        store = open_store(url=url, prefix="t:", connect_timeout_s=0.5, socket_timeout_s=0.5)
        try:
            with pytest.raises(RedisError):
                await store.fast.execute("PING")
            with pytest.raises(RedisError):
                await store.redis.ping()
        finally:
            await close_store(store)


@pytest.mark.parametrize("form", ["path", "query", "unix"])
async def test_pool_and_fast_connection_use_the_same_db_and_decoded_password(plain_server, admin, form):
    url = {
        "path": f"redis://{AUTH}127.0.0.1:{plain_server.port}/3",
        "query": f"redis://{AUTH}127.0.0.1:{plain_server.port}?db=3",
        "unix": f"unix://{AUTH}{plain_server.unix_socket}?db=3",
    }[form]
    store = open_store(url=url, prefix=f"t{uuid4().hex[:6]}:")
    try:
        prefix = await _use_both_paths(store)
    finally:
        await close_store(store)
    assert sorted(await admin.keys(prefix + "*")) == [prefix + "fast", prefix + "pool"]
    await admin.select(0)  # not on another db (nor, for the socket, another server)
    assert await admin.keys(prefix + "*") == []


async def test_the_pubsub_connection_uses_the_same_settings(tls_server, certificates):
    url = f"rediss://{AUTH}127.0.0.1:{tls_server.port}/0?ssl_ca_certs={certificates.ca}"
    store = open_store(url=url, prefix="t:")
    try:
        pubsub = await store.pubsub()
        await pubsub.subscribe("m360-test-channel")
        assert await store.redis.publish("m360-test-channel", "hello") == 1
        await pubsub.aclose()
    finally:
        await close_store(store)


async def test_a_rediss_cluster_url_gives_tls_to_every_node_and_to_pubsub(certificates):
    with start_redis_cluster(tls=certificates) as cluster:  # nodes and cluster bus: TLS only
        store = open_store(url=cluster.url, prefix=f"t{uuid4().hex[:6]}:")
        try:
            assert store.cluster and await ping(store)  # every primary answered
            prefixes = [f"{{u{n}}}" for n in range(12)]  # hash tags spread over the three nodes
            for tag in prefixes:
                verdict = await ratelimit.hit(store, policy="t", key=store.keys.prefix + tag, limit=5, window_s=60)
                assert verdict.allowed
            # The scripts went over the routed fast path: one TLS connection per primary.
            connections = store.fast._nodes
            assert sorted(port for _, port in connections) == sorted(cluster.ports)
            for node in connections.values():
                assert node._protocol._transport.get_extra_info("ssl_object") is not None
            pubsub = await store.pubsub()
            await pubsub.subscribe("m360-test-channel")
            await pubsub.aclose()
        finally:
            await close_store(store)


async def _auth_calls(admin: Redis) -> int:
    stats = await admin.info("commandstats")
    return stats.get("cmdstat_auth", {}).get("calls", 0) + stats.get("cmdstat_hello", {}).get("calls", 0)


def test_tls_parameters_reach_the_pool_and_every_cluster_node(certificates):
    single = parse_redis_url(f"rediss://{AUTH}h:1/2?ssl_ca_certs={certificates.ca}&ssl_check_hostname=false")
    pool = single.pool_kwargs()
    assert pool["connection_class"].__name__ == "SSLConnection"
    assert (pool["password"], pool["db"], pool["ssl_ca_certs"], pool["ssl_check_hostname"]) == (
        PASSWORD,
        2,
        str(certificates.ca),
        False,
    )
    cluster = parse_redis_url(f"rediss+cluster://{AUTH}a:1,b:2?ssl_ca_certs={certificates.ca}").cluster_kwargs()
    assert cluster["ssl"] is True and cluster["ssl_ca_certs"] == str(certificates.ca)
    assert cluster["password"] == PASSWORD
    assert [(n.host, n.port) for n in cluster["startup_nodes"]] == [("a", 1), ("b", 2)]
    listed = parse_redis_url(f"rediss://{AUTH}a:1?ssl_ca_certs={certificates.ca},b:2")
    assert listed.cluster and listed.tls and listed.hosts == (("a", 1), ("b", 2))


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("localhost:6379", "must start with"),
        ("http://127.0.0.1:6379", "must start with"),
        ("redis://127.0.0.1:port/0", "malformed"),
        ("redis://127.0.0.1:6379/zero", "database number"),
        ("redis://127.0.0.1:6379/1?db=2", "twice"),
        ("redis://127.0.0.1:6379?db=x", "malformed"),
        ("redis://127.0.0.1:6379?socket_timeout=9", "not supported"),
        ("redis://127.0.0.1:6379?ssl_cert_reqs=none", "not rediss"),
        ("rediss://127.0.0.1:6379?ssl_ca_certs=/nonexistent/ca.pem", "does not exist"),
        ("rediss://127.0.0.1:6379?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
        ("redis://user@127.0.0.1:6379", "without a password"),
        ("unix://", "socket path"),
        ("rediss://a:1,redis://b:2", "mix schemes"),
        ("redis://a:1/3,redis://b:2", "only database 0"),
        ("redis://:s3cr3tA@a:1,redis://:s3cr3tB@b:2", "disagree on password"),
        ("redis://:s3cr3t@127.0.0.1:port", "malformed"),
        ("redis://:s3cr3t:x/y@127.0.0.1:6379", "malformed|database number"),  # unencoded ':' and '/'
        ("redis://:a/s3cr3t@127.0.0.1:6379", "malformed|database number"),
    ],
)
def test_unusable_urls_are_refused_in_one_line_without_the_password(url, fragment):
    with pytest.raises(ValueError, match=fragment) as refused:
        parse_redis_url(url)
    message = str(refused.value)
    assert "\n" not in message and "s3cr3t" not in message
