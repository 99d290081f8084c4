"""DATABASE_URL, parsed once into what every PostgreSQL connection of the service uses.

The app's pool (Tortoise), `manas360 migrate`, maintenance jobs, synthetic seeding and the
start-up check all connect with `DatabaseURL.connect_kwargs()`. Before, the pool got
credentials from a plain `urlsplit` (a percent-encoded password stayed encoded, and the
query, with its TLS settings, was dropped) while the other paths handed asyncpg the raw
URL: migrations worked and the app then failed, or connected without the TLS asked for.

The query takes libpq's TLS parameters and nothing else: `sslmode` (disable, allow,
prefer, require, verify-ca, verify-full), `sslrootcert`, `sslcert` and `sslkey`.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
TLS_FILES = ("sslrootcert", "sslcert", "sslkey")
QUERY_PARAMETERS = ("sslmode", *TLS_FILES)
_VERIFYING = ("require", "verify-ca", "verify-full")


@dataclass(frozen=True, slots=True)
class DatabaseURL:
    host: str
    port: int
    user: str
    password: str | None
    database: str
    sslmode: str | None = None  # None: asyncpg's default (PGSSLMODE, else prefer), as libpq
    sslrootcert: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None

    def __repr__(self) -> str:  # never print the password
        return f"DatabaseURL({self.where}, user={self.user!r}, sslmode={self.sslmode!r})"

    @property
    def tls(self) -> bool:
        """Whether every connection is encrypted: sslmode require, verify-ca or verify-full
        (prefer, the default, falls back to plain text)."""
        return self.sslmode in _VERIFYING

    @property
    def where(self) -> str:
        """host:port/database, for messages."""
        return f"{self.host}:{self.port}/{self.database}"

    def connect_kwargs(self, *, database: str | None = None) -> dict[str, Any]:
        """Keyword arguments for asyncpg.connect / create_pool (and Tortoise's credentials)."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": database or self.database,
        }
        tls = self.ssl()
        if tls is not None:
            kwargs["ssl"] = tls
        return kwargs

    def ssl(self) -> ssl.SSLContext | str | None:
        """asyncpg's `ssl` argument. A bare mode is passed as the string, so asyncpg applies
        libpq's rules itself (prefer's fallback, ~/.postgresql/root.crt). With files,
        asyncpg takes them only from a DSN or PG* variables, so the context is built here,
        by the same rules: verify-ca checks the chain, verify-full also the host name, and
        require with a root certificate verifies the chain as libpq does."""
        if self.sslmode is None or not (self.sslrootcert or self.sslcert):
            return self.sslmode
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = self.sslmode == "verify-full"
        if self.sslrootcert:
            context.load_verify_locations(cafile=self.sslrootcert)
            context.verify_mode = ssl.CERT_REQUIRED
        else:  # require with a client certificate only: encrypt, do not verify
            context.verify_mode = ssl.CERT_NONE
        if self.sslcert:
            context.load_cert_chain(self.sslcert, keyfile=self.sslkey)
        return context


def parse_database_url(url: str) -> DatabaseURL:
    """The one reading of DATABASE_URL; ValueError (one line, no secrets) when unusable."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError("must be a postgres:// or postgresql:// URL")
    try:
        port = parts.port or 5432
    except ValueError:
        raise ValueError("has a port that is not a number") from None
    if "," in parts.netloc.rpartition("@")[2]:
        raise ValueError("lists several hosts; give one")
    query = _query(parts.query)
    sslmode = query.get("sslmode")
    if sslmode is not None and sslmode not in SSL_MODES:
        raise ValueError(f"sslmode must be one of {', '.join(SSL_MODES)}")
    files = [name for name in TLS_FILES if name in query]
    # libpq reads these files only when it verifies; a URL naming a root certificate under
    # prefer (the default) would look verified and not be, so such a URL is refused.
    if files and sslmode not in _VERIFYING:
        raise ValueError(f"{files[0]} needs sslmode=require, verify-ca or verify-full")
    if sslmode in ("verify-ca", "verify-full") and "sslcert" in query and "sslrootcert" not in query:
        raise ValueError(f"sslmode={sslmode} with sslcert needs sslrootcert too")
    if "sslkey" in query and "sslcert" not in query:
        raise ValueError("sslkey is given without sslcert")
    for name in files:
        if not os.path.isfile(query[name]):
            raise ValueError(f"{name} file {query[name]!r} does not exist")
    return DatabaseURL(
        host=_host(parts.netloc) or "127.0.0.1",
        port=port,
        user=unquote(parts.username) if parts.username else "postgres",
        password=unquote(parts.password) if parts.password else None,
        database=unquote(parts.path.lstrip("/")) or "manas360",
        sslmode=sslmode,
        sslrootcert=query.get("sslrootcert"),
        sslcert=query.get("sslcert"),
        sslkey=query.get("sslkey"),
    )


def _host(netloc: str) -> str:
    # Not urlsplit's `hostname`: it lower-cases, which would mangle a percent-encoded
    # socket directory (postgres://user@%2Frun%2FPG/db).
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        return hostport[1 : hostport.find("]")]
    return unquote(hostport.partition(":")[0])


def _query(raw: str) -> dict[str, str]:
    values = parse_qs(raw, keep_blank_values=True, strict_parsing=False)
    unknown = sorted(set(values) - set(QUERY_PARAMETERS))
    if unknown:
        raise ValueError(f"query parameter {unknown[0]!r} is not supported (only {', '.join(QUERY_PARAMETERS)})")
    repeated = [name for name, given in values.items() if len(given) > 1]
    if repeated:
        raise ValueError(f"query parameter {repeated[0]!r} is given twice")
    return {name: given[0] for name, given in values.items()}
