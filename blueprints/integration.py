"""What other services of the platform use to trust our access tokens: the public signing keys
(`/.well-known/jwks.json`) and revocation-aware introspection (`/api/v1/auth/introspect`).
docs/integration.md shows each from the other service's side."""

from __future__ import annotations

from urllib.parse import parse_qs

from pydantic import Field
from sanic import Blueprint
from sanic.response import HTTPResponse

from manas360 import errors
from manas360.blueprints.bodies import StrictBody
from manas360.http.bodies import read_json_object, validate
from manas360.http.deps import deps
from manas360.http.operations import operation
from manas360.http.responses import json_response, model_response
from manas360.http.sanic_types import AppRequest
from manas360.http.schemas import Introspection, Jwks
from manas360.metrics import INTROSPECTIONS
from manas360.security.jwt import MAX_TOKEN_CHARS
from manas360.services.integration import introspection

JWKS_MAX_AGE_S = 300
"""How long a verifier may keep the key set: the wait between publishing a new key and
signing with it (docs/integration.md, "Rotating keys")."""

keys_bp = Blueprint("jwks")
bp = Blueprint("introspection", url_prefix="/auth")


class IntrospectionBody(StrictBody):
    token: str = Field(min_length=1, max_length=MAX_TOKEN_CHARS, description="The access token to ask about")
    token_type_hint: str | None = Field(
        None, max_length=64, description="Accepted and ignored (RFC 7662): only access tokens are ever active"
    )


@keys_bp.get("/.well-known/jwks.json")
@operation(
    id="jwks",
    tag="integration",
    rate_limited=False,
    responses={200: Jwks},
    summary="The public keys access tokens are signed with (JWK Set)",
    description="With `JWT_ALGORITHM` `EdDSA` or `ES256`: every key still accepted, each with `kid`, `alg` "
    'and `use: sig` (the first listed in JWT_PRIVATE_KEYS signs). With `HS256`, `{"keys": []}`: '
    "the shared secret is never published. Cacheable for 300 s (`Cache-Control: public, "
    "max-age=300`); under no rate-limit policy.",
)
async def jwks(request: AppRequest) -> HTTPResponse:
    body = deps(request).codec.keyset.public_jwks()
    return json_response(body, headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE_S}"})


@bp.post("/introspect")
@operation(
    id="auth_introspect",
    tag="integration",
    body=IntrospectionBody,
    responses={200: Introspection},
    errors={401: ("Unauthorized",), 429: ("RateLimited",)},
    rate_limited=False,
    service_key=True,
    summary="Is this access token live, and whose is it? (RFC 7662, for other services)",
    description="The caller is a service: `Authorization: Bearer <key>` with one of INTROSPECTION_KEYS "
    "(`name:key`). The body is JSON or form-encoded (`token=…`). `active: true` with the token's "
    "claims and the account's live role, plan and permissions only for an unexpired, unrevoked "
    'access token of an active account; `{"active": false}` for anything else (revoked, '
    "expired, disabled or pending deletion, a refresh token, an `mfa_token`, a mailed token), "
    "without saying why. Answered from the same state as the API's own check: a revocation shows "
    "on the very next call. Under no rate-limit policy with a valid key; a call without one is "
    "401 `Unauthorized` and counted under `auth`.",
)
async def introspect(request: AppRequest) -> HTTPResponse:
    app = deps(request)
    if introspection.service_name(app.settings, request.headers.get("authorization")) is None:
        INTROSPECTIONS.labels("unauthorized").inc()
        # Not under a policy for services that hold a key; a caller without one is guessing.
        await request.app.ctx.edge.charge(request, "auth")
        raise errors.Unauthorized("A service key is required (INTROSPECTION_KEYS)")
    body = validate(IntrospectionBody, _form_or_json(request))
    answer = await introspection.introspect(
        db=app.db,
        settings=app.settings,
        store=app.store,
        codec=app.codec,
        catalog=app.catalog,
        clock=app.clock,
        token=body.token,
    )
    INTROSPECTIONS.labels("active" if answer["active"] else "inactive").inc()
    return model_response(Introspection.model_validate(answer), exclude_unset=True)


def _form_or_json(request: AppRequest) -> dict[str, object]:
    """RFC 7662 posts a form; JSON as everywhere else in this API. Repeated form fields are refused."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return read_json_object(request)
    try:
        fields = parse_qs(
            (request.body or b"").decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=8
        )
    except (UnicodeDecodeError, ValueError):
        raise errors.BadRequest("Body is not a valid form") from None
    if any(len(values) > 1 for values in fields.values()):
        raise errors.BadRequest("A form field is repeated")
    return {name: values[0] for name, values in fields.items()}
