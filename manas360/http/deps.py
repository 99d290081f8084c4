"""The handlers' way to the app's collaborators (manas360.container)."""

from __future__ import annotations

from manas360.container import Collaborators
from manas360.http.sanic_types import AppRequest


def deps(request: AppRequest) -> Collaborators:
    """The app's collaborators, built once by `create_app`."""
    return request.app.ctx.deps
