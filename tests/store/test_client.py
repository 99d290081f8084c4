"""The Store handle on both backends: every script on one slot, NOSCRIPT recovered on each
node, a GET from another slot beside the per-request script, and the health probes."""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from uuid import uuid4

import hiredis
from redis.crc import key_slot

from manas360.store.catalog import bump_catalog_version
from manas360.store.client import close_store, open_store, ping, pool_stats, script_source
from manas360.store.entitlements import (
    ClientLimit,
    UserContext,
    UserFill,
    check_request,
    forget_user_context,
    store_user_states,
)
from manas360.store.lockout import Limits, record_failure
from manas360.store.ratelimit import hit
from manas360.store.revocations import Revocations, record_revocations
from manas360.store.url import parse_redis_url
from tests.store.helpers import node_of, user_ids_on_every_node

SCRIPTS = ("request", "revocations", "lockout", "ratelimit", "fill", "forget")


@contextmanager
def recorded_scripts(store, monkeypatch):
    """Every EVAL/EVALSHA leaving the client, on any path (auto-pipelined connection,
    plain client, pipeline), as (script name, KEYS)."""
    names = {store.script(name)[1]: name for name in SCRIPTS}
    calls: list[tuple[str, list[str]]] = []

    def record(args) -> None:
        if str(args[0]).upper() in ("EVAL", "EVALSHA"):
            body = str(args[1])
            sha = hashlib.sha1(body.encode()).hexdigest() if args[0].upper() == "EVAL" else body
            calls.append((names.get(sha, sha), [str(key) for key in args[3 : 3 + int(args[2])]]))

    def spy(cls, method: str, commands_of) -> None:
        original = getattr(cls, method)

        def wrapper(self, *args, **kwargs):
            for command in commands_of(args):
                record(command)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, method, wrapper)

    spy(type(store.redis), "execute_command", lambda args: [args])
    spy(type(store.redis.pipeline()), "execute_command", lambda args: [args])
    if store.fast is not None:
        spy(type(store.fast), "execute", lambda args: [args])
        spy(type(store.fast), "execute_many", lambda args: args)
        if hasattr(store.fast, "execute_packed"):  # commands packed once, sent as bytes
            spy(type(store.fast), "execute_packed", lambda args: [_unpacked(args[0])])
    yield calls


def _unpacked(packed: bytes) -> list[str]:
    reader = hiredis.Reader(encoding="utf-8")
    reader.feed(packed)
    return reader.gets()


async def test_every_script_touches_exactly_one_slot(store, monkeypatch):
    user, other = str(uuid4()), str(uuid4())
    revocations = Revocations(
        epoch_ms=1_000, epoch_ttl_ms=60_000, jtis={"j1": 60_000, "j2": 60_000}, sessions={"s1": 60_000}
    )
    context = UserContext(role="subscriber", plan="free", plan_end_ms=0, status="active")
    with recorded_scripts(store, monkeypatch) as calls:
        await check_request(
            store,
            user_id=user,
            session_id="s1",
            jti="j1",
            issued_ms=2_000,
            api_limit=100,
            api_window_s=60,
            client_limit=ClientLimit(key=store.keys.ip_rate("192.0.2.1", "global"), limit=10, window_s=60),
        )
        await record_revocations(store, user_id=user, revocations=revocations)
        await store_user_states(
            store,
            states=[UserFill(user, context, revocations), UserFill(other, context, revocations)],
            context_ttl_s=60,
            loaded_ttl_ms=60_000,
        )
        await forget_user_context(store, user_id=user)
        await record_failure(
            store,
            email=f"{uuid4().hex}@example.com",
            source="192.0.2.1",
            known=False,
            limits=Limits(threshold=5, account_threshold=50, window_s=60, lock_s=60),
        )
        await hit(store, policy="global", key=store.keys.ip_rate("192.0.2.1", "global"), limit=10, window_s=60)
        await hit(store, policy="api", key=store.keys.user_rate(user, "api"), limit=10, window_s=60)
    assert {name for name, _ in calls} == set(SCRIPTS)
    for name, keys in calls:
        if name == "request" and not store.cluster:
            # On a single node the reference version and the client's per-IP counter ride
            # in the same script (other slots: never sent so to a cluster).
            assert keys[7:] == [store.keys.catalog_version(), store.keys.ip_rate("192.0.2.1", "global")]
            keys = keys[:7]
        assert len({key_slot(key.encode()) for key in keys}) == 1, (name, keys)


async def test_a_script_no_node_has_seen_is_loaded_on_each_node_at_first_use(store, store_url):
    # A variant of the limiter under a new sha: every node answers the first EVALSHA with
    # NOSCRIPT, each on its own, and the Store falls back to EVAL there.
    fresh = open_store(url=store_url, prefix=store.keys.prefix)
    source = script_source("ratelimit") + f"-- {uuid4().hex}\n"
    sha = hashlib.sha1(source.encode()).hexdigest()
    fresh._scripts["ratelimit"] = (source, sha)
    try:
        keys = [store.keys.user_rate(user, "api") for user in await user_ids_on_every_node(store)]
        for _ in range(2):  # first EVALSHA fails over to EVAL, then EVALSHA finds it
            verdicts = [await hit(fresh, policy="api", key=key, limit=5, window_s=60) for key in keys]
            assert all(verdict.allowed for verdict in verdicts)
        assert [v.remaining for v in verdicts] == [3] * len(keys)
        assert await store.redis.script_exists(sha) == [True]  # on a cluster: on every primary
    finally:
        await close_store(fresh)


async def test_the_per_request_check_reads_a_version_kept_on_another_node(store):
    version_node = await node_of(store, store.keys.catalog_version())
    users = await user_ids_on_every_node(store)
    nodes = [await node_of(store, store.keys.user_context(user)) for user in users]
    elsewhere = (u for u, node in zip(users, nodes, strict=True) if node != version_node)
    user = users[-1] if len(users) == 1 else next(elsewhere)
    version = await bump_catalog_version(store)
    _, seen = await check_request(
        store, user_id=user, session_id="s", jti="j", issued_ms=1, api_limit=100, api_window_s=60
    )
    assert seen == version


async def test_ping_and_pool_stats_answer(store):
    assert await ping(store) is True
    stats = pool_stats(store)
    assert stats["max"] > 0 and stats["in_use"] >= 0 and stats["idle"] >= 0
    if store.cluster:
        assert stats["nodes"] == 3


def test_cluster_seeds_and_credentials_come_from_either_url_form():
    for url in (
        "redis+cluster://app:p%40ss@10.0.0.1:7000,10.0.0.2:7001",
        "redis://app:p%40ss@10.0.0.1:7000/0,redis://10.0.0.2:7001/0",
    ):
        config = parse_redis_url(url)
        assert config.cluster and config.hosts == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
        assert (config.username, config.password) == ("app", "p@ss")
    config = parse_redis_url("redis+cluster://10.0.0.1:7000")
    assert (config.username, config.password) == (None, None)


async def test_the_cluster_switch_makes_one_seed_url_a_cluster_client(redis_cluster):
    # REDIS_CLUSTER=1 with a plain redis:// URL: the client finds the other nodes itself.
    seed = f"redis://:{redis_cluster.password}@127.0.0.1:{redis_cluster.ports[0]}/0"
    handle = open_store(url=seed, prefix=f"test-{uuid4().hex[:8]}:", cluster=True)
    try:
        assert handle.cluster and await ping(handle)
        assert len(handle.redis.get_primaries()) == 3
    finally:
        await close_store(handle)
