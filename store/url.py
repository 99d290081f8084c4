"""REDIS_URL, parsed once into the settings every Redis connection of the service uses.

The pool, the per-worker pipelined connection, the cluster nodes and pub/sub all connect
from one `RedisConfig`: the same scheme (TLS or not), credentials, database, socket path
and TLS parameters. Before this, the pipelined connection read the URL by itself and,
given `rediss://`, connected in plain text and sent AUTH in clear; given `?db=3` or a
unix socket it wrote to another database, or another server, than the pool read from.

Accepted forms (parsed by redis-py's own `parse_url`, so the pool reads them as before):
`redis://[user:pass@]host[:port][/db]`, `rediss://…` (TLS), `unix:///path[?db=N]`,
`redis+cluster://[user:pass@]host:port,host:port` (`rediss+cluster://` for TLS), or a
comma-separated list of `redis://`/`rediss://` URLs or `host:port` seeds. The query may
carry `db` and the TLS parameters `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`,
`ssl_cert_reqs` (none|optional|required) and `ssl_check_hostname`; anything else is
refused with a one-line `ValueError` rather than ignored.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import (
    Connection,
    RedisSSLContext,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)

TLS_PARAMETERS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")
QUERY_PARAMETERS = ("db", *TLS_PARAMETERS)
_CERT_REQS = ("none", "optional", "required")
_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_ENCODE_HINT = "no valid host:port (percent-encode '@', ':', '/' and '%' in the user name and password)"
_SCHEMES = "redis://, rediss://, unix://, redis+cluster://, rediss+cluster:// or a node list"


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """Where and how to connect; no secrets in `repr` or `where`."""

    hosts: tuple[tuple[str, int], ...] = (("127.0.0.1", 6379),)
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    cluster: bool = False
    # redis-py's SSLConnection defaults: verify the certificate and the host name.
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: str = "required"
    ssl_check_hostname: bool = True

    def __repr__(self) -> str:
        return f"RedisConfig({self.where}, db={self.db}, tls={self.tls}, cluster={self.cluster})"

    @property
    def where(self) -> str:
        """Host:port list or socket path, for messages (never the credentials)."""
        scheme = "rediss" if self.tls else "redis"
        if self.path:
            return f"unix://{self.path}"
        return f"{scheme}://" + ",".join(f"{host}:{port}" for host, port in self.hosts)

    def pool_kwargs(self) -> dict[str, Any]:
        """Arguments of a single-node redis-py ConnectionPool (and of its connections)."""
        kwargs: dict[str, Any] = {"db": self.db, "username": self.username, "password": self.password}
        if self.path:
            return {**kwargs, "connection_class": UnixDomainSocketConnection, "path": self.path}
        host, port = self.hosts[0]
        kwargs.update(host=host, port=port)
        if self.tls:
            return {**kwargs, "connection_class": SSLConnection, **self._tls_kwargs()}
        return {**kwargs, "connection_class": Connection}

    def cluster_kwargs(self) -> dict[str, Any]:
        """Arguments of redis-py's RedisCluster: the seeds, and what every node connects with."""
        kwargs: dict[str, Any] = {
            "startup_nodes": [ClusterNode(host, port) for host, port in self.hosts],
            "username": self.username,
            "password": self.password,
        }
        if self.tls:
            kwargs.update(ssl=True, **self._tls_kwargs())
        return kwargs

    def ssl_context(self) -> ssl.SSLContext | None:
        """The context a TLS connection verifies with; built by redis-py's own RedisSSLContext
        from the same values the pool's SSLConnection gets, so both verify alike."""
        if not self.tls:
            return None
        return RedisSSLContext(
            keyfile=self.ssl_keyfile,
            certfile=self.ssl_certfile,
            cert_reqs=self.ssl_cert_reqs,
            ca_certs=self.ssl_ca_certs,
            check_hostname=self.ssl_check_hostname,
        ).get()

    def _tls_kwargs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in TLS_PARAMETERS}


def is_cluster_url(url: str, *, cluster_flag: bool = False) -> bool:
    return cluster_flag or url.split("://", 1)[0] in _CLUSTER_SCHEMES or "," in url


def parse_redis_url(url: str, *, cluster: bool = False) -> RedisConfig:
    """The one reading of a Redis URL; ValueError (one line, no secrets) when it is unusable."""
    url = url.strip()
    if not url:
        raise ValueError("is empty")
    if not is_cluster_url(url, cluster_flag=cluster):
        return _parse_part(url)
    parts = [_parse_part(part) for part in _cluster_parts(url)]
    if any(part.path for part in parts):
        raise ValueError("a unix socket cannot be a cluster node")
    if any(part.db for part in parts):
        raise ValueError("a Redis Cluster has only database 0")
    merged = _merge(parts)
    return RedisConfig(**{**merged, "hosts": tuple(h for part in parts for h in part.hosts), "cluster": True})


def _parse_part(url: str) -> RedisConfig:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"must start with one of {_SCHEMES}")
    try:
        # redis-py's ConnectKwargs names only the URL's parts; parse_url also returns the
        # query's parameters (the TLS ones, converted), read below, hence a plain dict.
        options = cast(dict[str, Any], parse_url(url))
    except ValueError as exc:
        # Only a bad query value is quoted: a bad "port" may be a piece of an unencoded password.
        detail = _first_line(exc) if "Invalid value for" in str(exc) else _ENCODE_HINT
        raise ValueError(f"is malformed: {detail}") from None
    unknown = sorted(
        set(options) - {"connection_class", "host", "port", "path", "username", "password", *QUERY_PARAMETERS}
    )
    if unknown:
        raise ValueError(f"query parameter {unknown[0]!r} is not supported (only {', '.join(QUERY_PARAMETERS)})")
    tls = scheme == "rediss"
    _check_tls_options(options, tls=tls)
    if options.get("username") and not options.get("password"):
        raise ValueError("gives a user name without a password")
    if scheme == "unix" and not options.get("path"):
        raise ValueError("unix:// needs a socket path (unix:///path/to/redis.sock)")
    parts = urlsplit(url)
    path = parts.path.strip("/")
    if scheme in ("redis", "rediss") and path:
        if not path.isdigit():  # redis-py would ignore it (redis://host/abc selects db 0)
            raise ValueError("the path must be a database number (redis://host:port/3)")
        if "db" in parse_qs(parts.query):
            raise ValueError("gives the database twice (path and ?db=)")
    db = options.get("db", 0)
    if not 0 <= db <= 0xFFFF:
        raise ValueError(f"database {db} is out of range")
    return RedisConfig(
        hosts=((options.get("host", "localhost"), options.get("port", 6379)),),
        path=options.get("path"),
        db=db,
        username=options.get("username"),
        password=options.get("password"),
        tls=tls,
        ssl_ca_certs=options.get("ssl_ca_certs"),
        ssl_certfile=options.get("ssl_certfile"),
        ssl_keyfile=options.get("ssl_keyfile"),
        ssl_cert_reqs=options.get("ssl_cert_reqs", "required"),
        ssl_check_hostname=options.get("ssl_check_hostname", True),
    )


def _check_tls_options(options: dict[str, Any], *, tls: bool) -> None:
    given = [name for name in TLS_PARAMETERS if name in options]
    if given and not tls:
        # Someone who writes ssl_ca_certs expects TLS; a redis:// URL would connect in clear.
        raise ValueError(f"{given[0]} is given but the scheme is not rediss:// (the connection would be plain text)")
    if options.get("ssl_cert_reqs", "required") not in _CERT_REQS:
        raise ValueError(f"ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}")
    if options.get("ssl_check_hostname", True) is None:  # redis-py's to_bool maps "" to None
        raise ValueError("ssl_check_hostname must be true or false")
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if name in options and not os.path.isfile(options[name]):
            raise ValueError(f"{name} file {options[name]!r} does not exist")
    if "ssl_keyfile" in options and "ssl_certfile" not in options:
        raise ValueError("ssl_keyfile is given without ssl_certfile")


def _cluster_parts(url: str) -> list[str]:
    """One URL per seed: `redis+cluster://cred@h1:p1,h2:p2?q` shares its credentials and
    query with every seed; in a list, a bare `host:port` takes the scheme of the URLs."""
    scheme, _, rest = url.partition("://")
    if scheme in _CLUSTER_SCHEMES:
        rest, _, query = rest.partition("?")
        userinfo, at, hosts = rest.rpartition("@")
        head = f"{_CLUSTER_SCHEMES[scheme]}://{userinfo}{at}"
        tail = f"?{query}" if query else ""
        return [f"{head}{host.strip()}{tail}" for host in hosts.split(",") if host.strip()]
    items = [item.strip() for item in url.split(",") if item.strip()]
    schemes = {item.split("://", 1)[0] for item in items if "://" in item}
    if len(schemes) > 1:
        raise ValueError("the cluster nodes mix schemes (all redis:// or all rediss://)")
    default = schemes.pop() if schemes else "redis"
    return [item if "://" in item else f"{default}://{item}" for item in items]


def _merge(parts: list[RedisConfig]) -> dict[str, Any]:
    """The settings the seeds give, which must agree (a seed may leave them out)."""
    merged: dict[str, Any] = {}
    defaults = RedisConfig()
    for name in ("username", "password", "tls", *TLS_PARAMETERS):
        values = {getattr(part, name) for part in parts} - {getattr(defaults, name)}
        if len(values) > 1:
            raise ValueError(f"the cluster nodes disagree on {name}")
        merged[name] = values.pop() if values else getattr(defaults, name)
    return merged


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
