"""The error envelope: every exception mapped once to an API error (`to_app_error`) and
rendered as the docs/api.md envelope (`EnvelopeErrorHandler`)."""

from __future__ import annotations

from typing import cast

import pydantic
from loguru import logger
from sanic import Request
from sanic.exceptions import PayloadTooLarge, RequestCancelled, SanicException
from sanic.handlers import ErrorHandler
from sanic.response import HTTPResponse

from manas360 import errors
from manas360.http.request_id import request_id
from manas360.http.responses import json_response, model_response
from manas360.http.sanic_types import AppRequest
from manas360.http.schemas import envelope_model

_SANIC_STATUS_TO_ERROR: dict[int, type[errors.AppError]] = {
    400: errors.BadRequest,
    401: errors.Unauthorized,
    403: errors.PermissionDenied,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    408: errors.RequestTimeout,
    413: errors.PayloadTooLarge,
    503: errors.ServiceUnavailable,
}


def error_response(request: AppRequest | None, error: errors.AppError) -> HTTPResponse:
    headers = {}
    retry_after = error.extra.get("retry_after")
    if retry_after is not None and error.status in (429, 503):
        headers["Retry-After"] = str(retry_after)
    body = error.body(request_id(request))
    try:
        envelope = envelope_model(body).model_validate(body)
    except pydantic.ValidationError:
        # An envelope that breaks its own schema is a bug to fix, never a reason to fail the
        # error path: the client still gets the body (the contract tests catch the drift).
        logger.error("error body does not fit the envelope schema: {}", sorted(body))
        response = json_response(body, status=error.status, headers=headers)
    else:
        response = model_response(envelope, status=error.status, headers=headers, exclude_unset=True)
    response.headers["X-Request-ID"] = request_id(request)
    return response


def to_app_error(exception: BaseException) -> errors.AppError:
    """Map any exception to the API error it must leave as (unknown ones are 500s)."""
    if isinstance(exception, errors.AppError):
        return exception
    if isinstance(exception, PayloadTooLarge) and str(exception).startswith("Request header"):
        # Sanic reports a request head over REQUEST_MAX_HEADER_SIZE as a 413 "payload".
        return errors.RequestHeaderFieldsTooLarge()
    if isinstance(exception, SanicException):
        error_type = _SANIC_STATUS_TO_ERROR.get(exception.status_code)
        if error_type is errors.MethodNotAllowed:
            return errors.MethodNotAllowed()
        if error_type is errors.ServiceUnavailable:  # Sanic's response timeout: a store stalled
            return errors.ServiceUnavailable("The service could not answer in time")
        if error_type is not None:
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
        "ConnectionDoesNotExistError",
        "CannotConnectNowError",
        "InterfaceError",
        "TooManyConnectionsError",
        "ConnectionFailureError",
        "AdminShutdownError",
    ):
        return "database"
    return None


CLIENT_CLOSED_REQUEST = 499
"""The status recorded (metrics, access log) for a request whose client hung up before the
answer, as nginx records it. Sanic cancels the handler and still renders a response, which
nobody receives, through this handler and the response hook: as the 500 of an unknown
exception it was counted as a server error, e.g. every readiness probe that gave up (a
probe's 1 s timeout) while a starting worker's first check was still opening its pools."""


class EnvelopeErrorHandler(ErrorHandler):
    """Renders every error, from routing to crashes, as the docs/api.md envelope."""

    def default(self, request: Request, exception: Exception) -> HTTPResponse:  # an AppRequest
        if isinstance(exception, RequestCancelled):  # the client went away: nothing to answer
            logger.debug("request cancelled by the client on {}", request.path if request is not None else "-")
            return HTTPResponse(status=CLIENT_CLOSED_REQUEST)
        error = to_app_error(exception)
        if error.status >= 500:
            path = request.path if request is not None else "-"
            if isinstance(error, errors.ServiceUnavailable):
                if request is not None:
                    request.ctx.unavailable = error.extra.get("component")
                logger.warning("{} unavailable on {}: {!r}", error.extra.get("component"), path, exception)
            else:
                logger.opt(exception=exception).error("unhandled error on {}", path)
        response = error_response(cast(AppRequest, request), error)  # the app's request_class
        if isinstance(exception, SanicException) and exception.status_code == 405:
            allow = (getattr(exception, "headers", None) or {}).get("Allow")
            if allow:
                response.headers["Allow"] = allow
        return response

    @staticmethod
    def log(request: Request, exception: Exception) -> None:
        """Logging happens in default(), once, with the request id."""
