"""The handlers' way to the app's collaborators (manas360.container)."""

from __future__ import annotations

from sanic import Request

from manas360.container import Collaborators


def deps(request: Request) -> Collaborators:
    """The app's collaborators, built once by `create_app`."""
    collaborators: Collaborators = request.app.ctx.deps  # app.ctx is Sanic's untyped namespace
    return collaborators
