"""The HTTP edge shared by every blueprint: request ids, the error envelope, response
headers and JSON body parsing. Services never see any of this."""

from __future__ import annotations

import re
import uuid
from typing import Any, TypeVar

import orjson
import pydantic
from loguru import logger
from sanic import Request
from sanic.exceptions import SanicException
from sanic.handlers import ErrorHandler
from sanic.response import HTTPResponse

from manas360 import errors
from manas360.logs import request_id_var

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_SANIC_STATUS_TO_ERROR: dict[int, type[errors.AppError]] = {
    400: errors.BadRequest,
    401: errors.Unauthorized,
    403: errors.PermissionDenied,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    413: errors.PayloadTooLarge,
    503: errors.ServiceUnavailable,
}
Model = TypeVar("Model", bound=pydantic.BaseModel)


def request_id(request: Request | None) -> str:
    """The request's id: the client's X-Request-ID when sane, else a new one (once)."""
    if request is None:
        return request_id_var.get() if request_id_var.get() != "-" else uuid.uuid4().hex
    rid = getattr(request.ctx, "request_id", None)
    if rid is None:
        sent = request.headers.get("x-request-id", "")
        rid = sent if _SANE_REQUEST_ID.match(sent) else uuid.uuid4().hex
        request.ctx.request_id = rid
    return rid


def json_response(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> HTTPResponse:
    return HTTPResponse(orjson.dumps(body), status=status, headers=headers, content_type="application/json")


def error_response(request: Request | None, error: errors.AppError) -> HTTPResponse:
    headers = {}
    retry_after = error.extra.get("retry_after")
    if retry_after is not None and error.status in (429, 503):
        headers["Retry-After"] = str(retry_after)
    response = json_response(error.body(request_id(request)), status=error.status, headers=headers)
    response.headers["X-Request-ID"] = request_id(request)
    return response


def to_app_error(exception: BaseException) -> errors.AppError:
    """Map any exception to the API error it must leave as (unknown ones are 500s)."""
    if isinstance(exception, errors.AppError):
        return exception
    if isinstance(exception, SanicException):
        error_type = _SANIC_STATUS_TO_ERROR.get(exception.status_code)
        if error_type is errors.MethodNotAllowed:
            return errors.MethodNotAllowed()
        if error_type is not None and error_type is not errors.ServiceUnavailable:
            return error_type()
        if 400 <= exception.status_code < 500:
            return errors.BadRequest()
    outage = _outage_component(exception)
    if outage:
        return errors.ServiceUnavailable(f"{outage} is unavailable", component=outage)
    return errors.InternalError()


def _outage_component(exception: BaseException) -> str | None:
    from redis.exceptions import RedisError
    from tortoise.exceptions import DBConnectionError

    if isinstance(exception, RedisError):
        return "redis"
    if isinstance(exception, (DBConnectionError, ConnectionError, OSError)):
        return "database"
    module = type(exception).__module__
    if module.startswith("asyncpg") and type(exception).__name__ in (
            "ConnectionDoesNotExistError", "CannotConnectNowError", "InterfaceError",
            "TooManyConnectionsError", "ConnectionFailureError", "AdminShutdownError"):
        return "database"
    return None


class EnvelopeErrorHandler(ErrorHandler):
    """Renders every error, from routing to crashes, as the API.md envelope."""

    def default(self, request: Request, exception: Exception) -> HTTPResponse:
        error = to_app_error(exception)
        if error.status >= 500:
            path = request.path if request is not None else "-"
            if isinstance(error, errors.ServiceUnavailable):
                if request is not None:
                    request.ctx.unavailable = error.extra.get("component")
                logger.warning("{} unavailable on {}: {!r}", error.extra.get("component"), path, exception)
            else:
                logger.opt(exception=exception).error("unhandled error on {}", path)
        response = error_response(request, error)
        if isinstance(exception, SanicException) and exception.status_code == 405:
            allow = (getattr(exception, "headers", None) or {}).get("Allow")
            if allow:
                response.headers["Allow"] = allow
        return response

    @staticmethod
    def log(request: Request, exception: Exception) -> None:
        """Logging happens in default(), once, with the request id."""


def read_json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object; 400 for a wrong content type, bad JSON or a non-object."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise errors.BadRequest("Content-Type must be application/json")
    try:
        body = orjson.loads(request.body or b"")
    except orjson.JSONDecodeError:
        raise errors.BadRequest("Body is not valid JSON") from None
    if not isinstance(body, dict):
        raise errors.BadRequest("Body must be a JSON object")
    return body


def parse_body(request: Request, model: type[Model]) -> Model:
    """Validate the JSON object body against `model`; 422 with `fields` when it does not fit."""
    return validate(model, read_json_object(request))


def validate(model: type[Model], data: dict[str, Any]) -> Model:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        fields = {}
        for problem in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(part) for part in problem["loc"]) or "body"
            fields.setdefault(where, problem["msg"])
        raise errors.ValidationError(fields) from None
