"""DATABASE_URL: one parsed configuration for every PostgreSQL connection (manas360/database_url.py).

One private PostgreSQL for the module (tests/fixtures/services.py) that accepts TCP clients
only over TLS with a SCRAM password (`hostssl` only), and a role whose password holds
'@', '%', '/' and ':' (percent-encoded in the URL). The app's pool, `migrate`,
maintenance, synthetic seeding and the start-up check must all get in; a wrong CA under
verify-full and sslmode=disable must not.
"""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path
from urllib.parse import quote

import asyncpg
import pytest
from tortoise.exceptions import DBConnectionError

from manas360.db import migrate, orm
from manas360.server import _preflight
from manas360.services.ops import maintenance
from manas360.services.ops.synthetic import seed_synthetic_users
from manas360.settings import load_settings
from tests.fixtures import environment
from tests.fixtures.seeding import seed_catalog
from tests.fixtures.services import postgres_server
from tests.fixtures.tls import make_certificates

ROLE, PASSWORD = "app", "p@ss%w:rd/1"
SSL_IN_USE = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


@pytest.fixture(scope="module")
def certificates():
    with tempfile.TemporaryDirectory(prefix="m360-tls-") as directory:
        yield make_certificates(Path(directory)), make_certificates(Path(directory), name="other")


@pytest.fixture(scope="module")
async def server(certificates):
    with postgres_server(tls=certificates[0]) as pg:
        admin = await asyncpg.connect(**pg.admin_connect_kwargs)
        try:
            await admin.execute(f"CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{PASSWORD}'")
        finally:
            await admin.close()
        yield pg


def _settings(server, query: str):
    url = f"postgres://{ROLE}:{quote(PASSWORD, safe='')}@127.0.0.1:{server.port}/m360_tls?{query}"
    return load_settings(environment.test_environ(DATABASE_URL=url))


async def test_app_pool_migrate_maintenance_seeding_and_preflight_connect_over_tls(server, certificates):
    settings = _settings(server, f"sslmode=verify-full&sslrootcert={certificates[0].ca}")
    assert await migrate(settings) != []  # the advisory-lock connection, CREATE DATABASE and aerich's pool
    async with orm(settings) as db:
        rows = await db.connection.execute_query_dict(SSL_IN_USE)
        assert rows == [{"ssl": True}]
        await seed_catalog(db, settings)
    async with maintenance.connect(settings) as conn:
        assert await conn.fetchval(SSL_IN_USE) is True
    report = await seed_synthetic_users(settings=settings, count=2)
    assert report.requested == 2
    assert not [problem for problem in await _preflight(settings) if "PostgreSQL" in problem or "database" in problem]


async def test_verify_full_with_another_ca_is_refused_everywhere(server, certificates):
    settings = _settings(server, f"sslmode=verify-full&sslrootcert={certificates[1].ca}")
    with pytest.raises(ssl.SSLCertVerificationError):
        async with maintenance.connect(settings):
            pass
    with pytest.raises((ssl.SSLCertVerificationError, DBConnectionError)):
        async with orm(settings) as db:
            await db.connection.execute_query("SELECT 1")
    with pytest.raises(ssl.SSLCertVerificationError):
        await migrate(settings)


async def test_sslmode_disable_is_honoured_and_refused_by_a_tls_only_server(server):
    settings = _settings(server, "sslmode=disable")
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        async with maintenance.connect(settings):
            pass
    with pytest.raises((asyncpg.InvalidAuthorizationSpecificationError, DBConnectionError)):
        async with orm(settings) as db:
            await db.connection.execute_query("SELECT 1")


def test_require_with_a_root_certificate_verifies_the_chain_as_libpq_does(certificates):
    ca = certificates[0].ca
    context = load_settings(
        environment.test_environ(DATABASE_URL=f"postgres://u@h/db?sslmode=require&sslrootcert={ca}")
    ).database.ssl()
    assert context.verify_mode == ssl.CERT_REQUIRED and not context.check_hostname
    bare = load_settings(environment.test_environ(DATABASE_URL="postgres://u@h/db?sslmode=verify-full")).database
    assert bare.ssl() == "verify-full"  # asyncpg applies libpq's rules to a bare mode itself
