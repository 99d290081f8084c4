"""Schema-driven fuzzing of the service's own OpenAPI document (schemathesis strategies run
by hypothesis): valid and invalid requests for every documented operation, a bounded number
of each, against a real `manas360 serve`. Whatever arrives, the answer is never a 5xx and
every error is the API.md envelope. Operations that need a bearer token get a fresh one per
example (a new registration), so the fuzz reaches their handlers, not just the 401.

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

from tests.fixtures.server import start_server

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 20  # per operation and mode: the whole run stays well under a minute
ENVELOPE_KEYS = {"error", "message", "request_id"}


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


def fresh_token(registrar: httpx.Client) -> str:
    response = registrar.post("/api/v1/auth/register",
                              json={"email": f"fuzz-{uuid4().hex}@example.com", "password": "fuzz-password-1"})
    assert response.status_code == 201, response.text
    return response.json()["access_token"]


def check_response(case, *, registrar: httpx.Client) -> None:
    headers = None
    if case.operation.definition.raw.get("security"):
        headers = {"authorization": f"Bearer {fresh_token(registrar)}"}
    response = case.call(timeout=10, headers=headers)
    assert response.status_code < 500, (case.as_curl_command(), response.text)
    if response.status_code >= 400:
        body = response.json()
        assert ENVELOPE_KEYS <= set(body), (case.as_curl_command(), response.text)
        assert [body["request_id"]] == response.headers["x-request-id"]  # header -> list of values


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_fuzzed_requests_never_get_a_5xx_and_errors_are_the_envelope(api_schema, registrar, mode):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 3

    def check(case):
        check_response(case, registrar=registrar)

    fuzzed = 0
    for operation in operations:
        fuzz = given(case=operation.as_strategy(generation_mode=mode))(check)
        try:
            settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                     suppress_health_check=list(HealthCheck))(fuzz)()
        except Unsatisfiable:
            # An operation without parameters or body has no invalid request to make.
            assert mode is GenerationMode.NEGATIVE and not _has_inputs(operation), operation.label
            continue
        fuzzed += 1
    assert fuzzed >= 3


def _has_inputs(operation) -> bool:
    definition = operation.definition.raw
    return bool(definition.get("parameters") or definition.get("requestBody") or operation.path_parameters)
