"""The one app factory: settings, listeners, middleware, blueprints, error handling."""

from __future__ import annotations

import asyncio
import gc
import os

from sanic import Request, Sanic
from sanic_ext.extensions.http.extension import HTTPExtension

from manas360.access_log import access_logger
from manas360.container import build_collaborators
from manas360.edge import install_edge, orphan, startup_stop
from manas360.edge.cors import cors_config
from manas360.http.errors import EnvelopeErrorHandler
from manas360.http.hooks import install_hooks
from manas360.http.metrics import install_metrics
from manas360.http.sanic_types import App, AppContext, AppRequest
from manas360.logs import configure_logging
from manas360.security.passwords import set_hashing_threads, verify_dummy
from manas360.services.access.catalog import watch_reference
from manas360.settings import Settings, load_settings
from manas360.store import close_store


def create_app(settings: Settings | None = None, *, name: str = "manas360") -> App:
    """Build the Sanic app. Nothing connects here: pools open in the server listeners."""
    settings = settings or load_settings()
    configure_logging(settings)
    # request_class: sanic types the parameter as its base Request, not generic in the context.
    request_class: type[Request] = AppRequest  # type: ignore[assignment]
    app = Sanic(
        name,
        configure_logging=False,
        error_handler=EnvelopeErrorHandler(),
        ctx=AppContext(),
        request_class=request_class,
    )
    app.config.update(
        REQUEST_MAX_SIZE=settings.max_body_bytes,
        REQUEST_MAX_HEADER_SIZE=8192,
        REQUEST_TIMEOUT=settings.request_timeout_s,
        RESPONSE_TIMEOUT=settings.request_timeout_s,
        KEEP_ALIVE_TIMEOUT=settings.keep_alive_timeout_s,
        GRACEFUL_SHUTDOWN_TIMEOUT=settings.graceful_shutdown_timeout_s,
        ACCESS_LOG=False,
        MOTD=False,
        NOISY_EXCEPTIONS=False,
        FALLBACK_ERROR_FORMAT="json",
        # The OpenAPI document and /docs come from manas360.http.openapi and blueprints/docs.py,
        # not from sanic-ext (which stays for CORS).
        OAS=False,
        HEALTH=False,
        # request.ip stays the socket peer: the client's address behind TRUSTED_PROXIES is
        # decided in one place (manas360.edge.request_client_ip), never by Sanic itself.
        PROXIES_COUNT=None,
        REAL_IP_HEADER=None,
        FORWARDED_SECRET=None,
        **cors_config(settings),
    )
    # sanic-ext: only what the service uses, its HTTP extension (CORS, automatic HEAD and
    # OPTIONS). Its dependency injection, unused here, would run a signal handler on every
    # request; its OpenAPI (replaced by manas360.http.openapi), health monitor and logger are off.
    app.extend(built_in_extensions=False, extensions=[HTTPExtension])
    # One typed container of long-lived collaborators (no I/O here); handlers hand its
    # parts to services, which never see the container itself.
    app.ctx.deps = build_collaborators(settings)
    _add_listeners(app, settings)
    edge, blocked_paths = install_edge(app, settings)
    stats = install_metrics(app, codec=app.ctx.deps.codec)
    install_hooks(
        app, settings, edge=edge, stats=stats, blocked_paths=blocked_paths, access_log=access_logger(settings)
    )
    _add_blueprints(app)
    return app


def _add_listeners(app: App, settings: Settings) -> None:
    @app.before_server_start
    async def open_database(app: App) -> None:
        # The pool is lazy: a database that is down at start does not stop the worker;
        # requests that need it answer 503 until it is back.
        await app.ctx.deps.db.open()

    @app.after_server_stop
    async def close_database(app: App) -> None:
        await app.ctx.deps.db.close()

    @app.after_server_stop
    async def close_redis(app: App) -> None:
        # The store was built with the app (create_app); its connections opened lazily.
        await close_store(app.ctx.deps.store)

    @app.before_server_start
    async def prepare_auth(app: App) -> None:
        # Once per worker: the dummy hash that unknown-email logins verify against, so no
        # login pays for creating it.
        set_hashing_threads((os.cpu_count() or 1) // settings.workers)
        await verify_dummy(password="warm-up", cost=settings.bcrypt_cost)

    @app.before_server_start
    async def open_catalog(app: App) -> None:
        # Role/plan tables live in each worker's memory; loaded lazily at the version the
        # first request reads, then kept current by pub/sub and a version poll.
        deps = app.ctx.deps
        app.ctx.catalog_watch = asyncio.get_running_loop().create_task(watch_reference(deps.catalog, deps.store))

    @app.after_server_stop
    async def close_catalog(app: App) -> None:
        app.ctx.catalog_watch.cancel()

    @app.before_server_start
    async def start_mail_sender(app: App) -> None:
        # Every worker sends; SKIP LOCKED gives each queued mail to one of them.
        app.ctx.mail_sender = app.ctx.deps.outbox.start()
        app.ctx.webhook_sender = app.ctx.deps.webhooks.start()

    @app.after_server_start
    async def keep_a_stop_asked_during_start(app: App) -> None:
        # First of the after_server_start listeners: a SIGTERM met while they run would
        # otherwise be forgotten (manas360.edge.startup_stop). Only under `manas360 serve`
        # (a worker process): in-process test apps keep their own signal handling.
        if os.environ.get("SANIC_WORKER_PROCESS"):
            app.ctx.startup_stop = startup_stop.install(app)
            app.add_task(orphan.stop_when_orphaned(app, parent_pid=os.getppid()), name="orphan-watch")

    @app.after_server_start
    async def freeze_startup_objects(app: App) -> None:
        # Everything loaded by now (modules, routes, schemas, pools) lives as long as the
        # worker: moved out of the collector's generations, a full collection no longer
        # walks it (measured in a started worker: a full collection 50-74 ms before, 0.4-1.1 ms
        # after; under load, one every ~300 ms had been the gated GET's p99).
        gc.freeze()

    @app.before_server_stop
    async def stop_mail_sender(app: App) -> None:
        # Before the pools close: a delivery in progress is recorded, not repeated.
        await app.ctx.deps.outbox.stop(app.ctx.mail_sender)
        await app.ctx.deps.webhooks.stop(app.ctx.webhook_sender)


def _add_blueprints(app: App) -> None:
    from sanic import Blueprint

    from manas360.blueprints import (
        account,
        admin,
        auth,
        docs,
        integration,
        lifecycle,
        me,
        mfa,
        ops,
        passkeys,
        plans,
        product,
        recovery,
    )

    app.blueprint(ops.bp)
    app.blueprint(docs.bp)
    app.blueprint(account.bp)
    app.blueprint(integration.keys_bp)
    app.blueprint(
        Blueprint.group(
            auth.bp,
            recovery.bp,
            mfa.bp,
            passkeys.bp,
            integration.bp,
            me.bp,
            lifecycle.bp,
            lifecycle.auth_bp,
            plans.bp,
            product.bp,
            admin.bp,
            version=1,
            version_prefix="/api/v",
        )
    )
