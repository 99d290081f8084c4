"""Schema-driven fuzzing of the service's own OpenAPI document (schemathesis strategies run by
hypothesis): valid and invalid requests for every documented operation, parameters and
bodies generated from their schemas, a bounded number of each, against a real `manas360
serve`. Whatever arrives, the answer is never a 5xx, and schemathesis's conformance checks
hold: the status is documented for the operation, and the content type, headers and body are
the documented ones (every error is the envelope). Operations that need a bearer token get a
fresh one per example (a new registration), so the fuzz reaches their handlers, not just the
401; the admin reads (every documented admin query parameter) are made as an administrator,
so they reach the handlers too, not just the 403. Admin writes stay at the 403: fuzzing them
as an administrator would rewrite the roles and plans the rest of the session relies on.

(schemathesis's own pytest integration, `from_fixture(...).parametrize()`, fails on pytest
9.2, so the operations are driven here with hypothesis directly.)"""

from __future__ import annotations

from uuid import uuid4

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fixtures.accounts import PASSWORD
from tests.fixtures.server import start_server
from tests.operations.helpers import run_cli

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 20  # per operation and mode: the whole run stays well under a minute
ENVELOPE_KEYS = {"error", "message", "request_id"}
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def api_schema(environ, database, tmp_path_factory):
    server = start_server(environ, workers=1, tmp_dir=tmp_path_factory.mktemp("fuzz"))  # `manas360 serve`
    try:
        schema = schemathesis.openapi.from_url(server.url + "/docs/openapi.json", timeout=10)
        schema.config.update(base_url=server.url)
        yield schema
    finally:
        server.stop()


@pytest.fixture(scope="module")
def registrar(api_schema):
    with httpx.Client(base_url=api_schema.config.base_url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def admin_headers(environ, registrar) -> dict[str, str]:
    """An administrator (role `admin`, made by a seeded superadmin) logged in on the server."""
    root = f"root-fuzz-{uuid4().hex[:8]}@example.com"
    seeded = run_cli({**environ, "SUPERADMIN_EMAIL": root, "SUPERADMIN_PASSWORD": PASSWORD}, "seed")
    assert seeded.returncode == 0, seeded.stderr
    superadmin = {"authorization": f"Bearer {_login(registrar, root)}"}
    email = f"fuzz-admin-{uuid4().hex}@example.com"
    account = registrar.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD}).json()
    promoted = registrar.put(
        f"/api/v1/admin/users/{account['user']['id']}/role", json={"role": "admin"}, headers=superadmin
    )
    assert promoted.status_code == 200, promoted.text
    headers = {"authorization": f"Bearer {_login(registrar, email)}"}
    assert registrar.get("/api/v1/admin/audit-logs", headers=headers).status_code == 200
    return headers


def _login(client: httpx.Client, email: str) -> str:
    response = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def _is_admin_read(operation) -> bool:
    return operation.method.upper() == "GET" and operation.path.startswith("/api/v1/admin")


def fresh_token(registrar: httpx.Client) -> str:
    response = registrar.post(
        "/api/v1/auth/register", json={"email": f"fuzz-{uuid4().hex}@example.com", "password": "fuzz-password-1"}
    )
    assert response.status_code == 201, response.text
    return response.json()["access_token"]


def check_response(case, *, registrar: httpx.Client, admin_headers: dict[str, str]) -> int:
    headers = None
    if _is_admin_read(case.operation):
        headers = admin_headers
    elif case.operation.definition.raw.get("security"):
        headers = {"authorization": f"Bearer {fresh_token(registrar)}"}
    response = case.call(timeout=10, headers=headers)
    assert response.status_code < 500, (case.as_curl_command(), response.text)
    case.validate_response(response, checks=CONFORMANCE, headers=headers)
    if response.status_code >= 400:
        body = response.json()
        assert ENVELOPE_KEYS <= set(body), (case.as_curl_command(), response.text)
        assert [body["request_id"]] == response.headers["x-request-id"]  # header -> list of values
    return response.status_code


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_fuzzed_requests_never_get_a_5xx_and_errors_are_the_envelope(api_schema, registrar, admin_headers, mode):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 3

    statuses: dict[str, set[int]] = {}

    def check(case):
        status = check_response(case, registrar=registrar, admin_headers=admin_headers)
        statuses.setdefault(case.operation.label, set()).add(status)

    fuzzed = 0
    for operation in operations:
        fuzz = given(case=operation.as_strategy(generation_mode=mode))(check)
        try:
            settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )(fuzz)()
        except Unsatisfiable:
            # An operation without parameters or body has no invalid request to make.
            assert mode is GenerationMode.NEGATIVE and not _has_inputs(operation), operation.label
            continue
        fuzzed += 1
    assert fuzzed >= 3
    if mode is GenerationMode.POSITIVE:  # the admin reads reached their handlers, not the 403
        for operation in operations:
            if _is_admin_read(operation) and not operation.path_parameters:
                assert 200 in statuses[operation.label], (operation.label, statuses[operation.label])


def _has_inputs(operation) -> bool:
    definition = operation.definition.raw
    return bool(definition.get("parameters") or definition.get("requestBody") or operation.path_parameters)


def test_every_admin_list_parameter_is_documented(api_schema):
    """The fuzz can only reach the query parameters the document declares."""
    declared = {}
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if _is_admin_read(operation):
            declared[operation.path] = {
                p["name"] for p in operation.definition.raw.get("parameters", []) if p.get("in") == "query"
            }
    assert declared["/api/v1/admin/users"] == {"limit", "cursor", "q"}
    assert declared["/api/v1/admin/audit-logs"] == {"user_id", "action", "limit", "cursor"}
