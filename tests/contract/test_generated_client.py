"""A Python client generated from docs/openapi.json (openapi-python-client, a test
dependency) drives register -> login -> me -> refresh -> logout against a real
`manas360 serve`: the contract is complete enough for a generator to produce a working
client, typed models and error envelopes included."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from uuid import uuid4

import pytest

from tests.fixtures.accounts import PASSWORD
from tests.fixtures.contract import DOCUMENT
from tests.fixtures.server import start_server

pytestmark = pytest.mark.slow
PACKAGE = "manas360_client"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """The client package, generated into a temporary directory and imported."""
    where = tmp_path_factory.mktemp("client")
    config = where / "config.yml"
    # No post hooks: the generator would otherwise run ruff over the output (not needed to import it).
    config.write_text(f"project_name_override: {PACKAGE}\npackage_name_override: {PACKAGE}\npost_hooks: []\n")
    generator = Path(sys.executable).parent / "openapi-python-client"
    result = subprocess.run(
        [
            str(generator),
            "generate",
            "--path",
            str(DOCUMENT),
            "--config",
            str(config),
            "--meta",
            "none",
            "--output-path",
            str(where / PACKAGE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in (result.stdout + result.stderr).lower(), result.stdout + result.stderr
    sys.path.insert(0, str(where))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(where))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def server_url(environ, database, tmp_path_factory):
    server = start_server(environ, workers=1, tmp_dir=tmp_path_factory.mktemp("client-server"))
    try:
        yield server.url
    finally:
        server.stop()


def test_a_generated_client_registers_logs_in_refreshes_and_logs_out(generated, server_url):
    # Imported by name once `generated` has put the package on sys.path.
    from manas360_client import AuthenticatedClient, Client
    from manas360_client.api.auth import auth_login, auth_logout, auth_refresh, auth_register
    from manas360_client.api.me import me_get
    from manas360_client.models import ErrorEnvelope, LoginBody, Me, RefreshBody, RegisterBody, TokenPair

    email = f"client-{uuid4().hex}@example.com"
    public = Client(base_url=server_url, raise_on_unexpected_status=True)

    registered = auth_register.sync_detailed(
        client=public, body=RegisterBody(email=email, password=PASSWORD, display_name="Generated")
    )
    assert registered.status_code == 201
    assert isinstance(registered.parsed, TokenPair)
    assert registered.parsed.user.email == email and registered.parsed.token_type == "Bearer"

    pair = auth_login.sync(client=public, body=LoginBody(email=email, password=PASSWORD))
    assert isinstance(pair, TokenPair) and pair.user.id == registered.parsed.user.id

    def as_caller(token: str) -> AuthenticatedClient:
        return AuthenticatedClient(base_url=server_url, token=token, raise_on_unexpected_status=True)

    me = me_get.sync(client=as_caller(pair.access_token))
    assert isinstance(me, Me)
    assert (me.email, me.display_name, me.plan, me.subscription.plan) == (email, "Generated", "free", "free")
    assert "profile.read" in me.permissions

    rotated = auth_refresh.sync(client=public, body=RefreshBody(refresh_token=pair.refresh_token))
    assert isinstance(rotated, TokenPair) and rotated.refresh_token != pair.refresh_token

    logged_out = auth_logout.sync_detailed(client=as_caller(rotated.access_token))
    assert logged_out.status_code == 204

    refused = me_get.sync_detailed(client=as_caller(rotated.access_token))
    assert refused.status_code == 401
    assert isinstance(refused.parsed, ErrorEnvelope) and refused.parsed.error == "TokenRevoked"
    assert refused.parsed.request_id == refused.headers["x-request-id"]

    reused = auth_refresh.sync_detailed(client=public, body=RefreshBody(refresh_token=rotated.refresh_token))
    assert reused.status_code == 401 and isinstance(reused.parsed, ErrorEnvelope)
