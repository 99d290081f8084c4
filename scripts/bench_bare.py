"""The baseline of scripts/bench: a bare Sanic JSON endpoint, same Sanic, same workers."""

from sanic import Sanic
from sanic.response import json


def create_app() -> Sanic:
    app = Sanic("manas360_bare", configure_logging=False)
    app.config.update(ACCESS_LOG=False, MOTD=False)

    @app.get("/")
    async def bare(request):
        return json({"status": "ok"})

    return app
