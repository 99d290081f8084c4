"""Request-body building blocks shared by the blueprints.

Mass assignment: every body refuses unknown fields (422 `ValidationError` naming them), so
a `role`, `privilege_level` or `plan` sent by a client never reaches a service.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from manas360.security.passwords import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS
from manas360.services.accounts import users


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _new_email(value: str) -> str:
    value = users.normalize_email(value)
    problem = users.email_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _any_email(value: str) -> str:
    # Login accepts anything an account could be found under; no syntax check to leak.
    value = users.normalize_email(value)
    # PostgreSQL text cannot hold NUL, and no address holds a control character.
    if not value or len(value) > 320 or not value.isprintable():
        raise ValueError("is not a valid email address")
    return value


def _display_name(value: str) -> str:
    problem = users.display_name_problem(value)
    if problem:
        raise ValueError(problem)
    return value.strip()


NewEmail = Annotated[str, Field(max_length=320), AfterValidator(_new_email)]
Email = Annotated[str, Field(min_length=1, max_length=320), AfterValidator(_any_email)]
# Length is checked before any hashing, so a long password costs no bcrypt time.
NewPassword = Annotated[str, Field(min_length=MIN_PASSWORD_CHARS, max_length=MAX_PASSWORD_CHARS)]
Password = Annotated[str, Field(min_length=1, max_length=MAX_PASSWORD_CHARS)]
# A 6-digit TOTP code or a recovery code (`xxxx-xxxx-xxxx-xxxx`); spaces and dashes are ignored.
Code = Annotated[str, Field(min_length=1, max_length=64)]
DisplayName = Annotated[str, Field(max_length=users.MAX_DISPLAY_NAME_CHARS), AfterValidator(_display_name)]


# Path parameters: documented from these models; an id that is not one (not a UUID, or
# no such row) is 404 `NotFound`, never 422, so nothing about ids is told apart.
class UserPath(BaseModel):
    user_id: str = Field(description="The user's id (UUID)")


class SessionPath(BaseModel):
    session_id: str = Field(description="One of the caller's session ids (UUID), as GET /auth/sessions lists them")


class RolePath(BaseModel):
    name: str = Field(description="A role name, e.g. `subscriber`")


class PlanPath(BaseModel):
    name: str = Field(description="A plan name, e.g. `premium`")
