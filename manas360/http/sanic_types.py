"""The type of this service's Sanic app, for annotations: `create_app` builds a plain
`Sanic(name)`, whose config is sanic's Config and whose ctx a SimpleNamespace."""

from __future__ import annotations

from types import SimpleNamespace

from sanic import Sanic
from sanic.config import Config

App = Sanic[Config, SimpleNamespace]
