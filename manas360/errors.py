"""One error base, one mapping: every failure leaves as the docs/api.md envelope.

`AppError` carries the HTTP status, the machine `code` from docs/api.md and a client-safe
message; `extra` holds client-safe keys (`fields`, `upgrade`, `retry_after`). Internal
detail goes to the log, never into these objects.
"""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    status = 500
    code = "InternalError"
    message = "Internal server error"

    def __init__(self, message: str | None = None, **extra: Any) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.extra = extra

    def body(self, request_id: str) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, "request_id": request_id, **self.extra}


class BadRequest(AppError):
    status, code, message = 400, "BadRequest", "Malformed request"


class Unauthorized(AppError):
    status, code, message = 401, "Unauthorized", "Authentication required"


class TokenExpired(AppError):
    status, code, message = 401, "TokenExpired", "Token has expired"


class TokenRevoked(AppError):
    status, code, message = 401, "TokenRevoked", "Token has been revoked"


class InvalidToken(AppError):
    status, code, message = 401, "InvalidToken", "Token is invalid"


class InvalidCredentials(AppError):
    status, code, message = 401, "InvalidCredentials", "Invalid email or password"


class TokenReuseDetected(AppError):
    status, code, message = 401, "TokenReuseDetected", "Refresh token reuse detected; session revoked"


class PermissionDenied(AppError):
    status, code, message = 403, "PermissionDenied", "Permission denied"


class FeatureNotAvailable(AppError):
    status, code, message = 403, "FeatureNotAvailable", "Your plan does not include this feature"


class InsufficientPrivileges(AppError):
    status, code, message = 403, "InsufficientPrivileges", "Insufficient privileges"


class PrivilegeEscalationPrevented(AppError):
    status, code, message = 403, "PrivilegeEscalationPrevented", "Privilege escalation prevented"


class AccountDisabled(AppError):
    status, code, message = 403, "AccountDisabled", "This account has been disabled"


class AccountPendingDeletion(AppError):
    status, code, message = 403, "AccountPendingDeletion", "This account is scheduled for deletion"


def status_refusal(status: str) -> AppError:
    """What a request of an account that is not `active` is told: its deletion is pending, or it
    is disabled."""
    return AccountPendingDeletion() if status == "pending_deletion" else AccountDisabled()


class EmailNotVerified(AppError):
    status, code, message = 403, "EmailNotVerified", "Confirm your email address before signing in"


class MfaRequired(AppError):
    """The first factor was right and multi-factor is on: no tokens yet. With an `mfa_token`
    when the login continues at POST /auth/mfa/verify; without one where the same request must
    be sent again with a `code` (a password reset, a re-authentication)."""

    status, code, message = 403, "MfaRequired", "A second factor is required: POST /auth/mfa/verify"

    def __init__(self, mfa_token: str | None = None, message: str | None = None) -> None:
        if mfa_token is None:
            super().__init__(message or "A second factor is required: send a `code` (TOTP or recovery code)")
        else:
            super().__init__(message, mfa_token=mfa_token)


class ReauthenticationRequired(AppError):
    """A sensitive change needs a credential presented within `max_age` seconds, at
    `required_aal` (POST /auth/reauthenticate gives the session a fresh one)."""

    status, code, message = (
        403,
        "ReauthenticationRequired",
        ("Confirm it is you: POST /auth/reauthenticate, then try again"),
    )

    def __init__(self, *, max_age: int, required_aal: int, message: str | None = None) -> None:
        super().__init__(message, max_age=max_age, required_aal=required_aal)


class NotFound(AppError):
    status, code, message = 404, "NotFound", "Not found"


class MethodNotAllowed(AppError):
    status, code, message = 405, "MethodNotAllowed", "Method not allowed"


class RequestTimeout(AppError):
    status, code, message = 408, "RequestTimeout", "The request was not received in time"


class EmailTaken(AppError):
    status, code, message = 409, "EmailTaken", "Email is already registered"


class MfaAlreadyEnabled(AppError):
    status, code, message = 409, "MfaAlreadyEnabled", "Multi-factor authentication is already on"


class PasskeyLimitReached(AppError):
    status, code, message = 409, "PasskeyLimitReached", "This account already holds the most passkeys it may"


class EmailChangePending(AppError):
    status, code, message = 409, "EmailChangePending", "A recent change of address can still be reverted"


class PayloadTooLarge(AppError):
    status, code, message = 413, "PayloadTooLarge", "Request body too large"


class RequestHeaderFieldsTooLarge(AppError):
    status, code, message = 431, "RequestHeaderFieldsTooLarge", "Request headers too large or too many"


class ValidationError(AppError):
    status, code, message = 422, "ValidationError", "Request validation failed"

    def __init__(self, fields: dict[str, str], message: str | None = None) -> None:
        super().__init__(message, fields=fields)


class AccountLocked(AppError):
    status, code, message = 423, "AccountLocked", "Account temporarily locked"

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        super().__init__(message, retry_after=max(1, int(retry_after)))


class RateLimited(AppError):
    status, code, message = 429, "RateLimited", "Too many requests"

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        super().__init__(message, retry_after=max(1, int(retry_after)))


class ServiceUnavailable(AppError):
    status, code, message = 503, "ServiceUnavailable", "A backing service is unavailable"

    def __init__(self, message: str | None = None, retry_after: int = 5, **extra: Any) -> None:
        super().__init__(message, retry_after=retry_after, **extra)


class InternalError(AppError):
    pass
