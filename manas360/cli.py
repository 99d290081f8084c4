"""The `manas360` command: serve, migrate, seed, warm-cache, maintenance.

Every subcommand loads and validates settings first; a bad or unsafe setting is one line
on stderr and exit status 2, an unreachable store exit status 1 — never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable

from manas360.settings import Settings, SettingsError, load_settings

EXIT_UNAVAILABLE = 1
EXIT_CONFIG = 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"manas360: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return args.func(settings, args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="manas360", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the API with the configured workers")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(func=_serve)

    migrate = sub.add_parser("migrate", help="create the database if missing and apply migrations (idempotent)")
    migrate.set_defaults(func=_migrate)

    seed = sub.add_parser("seed", help="seed reference data and the superadmin (idempotent)")
    seed.set_defaults(func=_seed)
    return parser


def _run(settings: Settings, work: Callable[[], Awaitable[int]]) -> int:
    """Run `work` with logging configured, turning store outages into one-line errors."""
    from manas360.logs import configure_logging

    configure_logging(settings)
    try:
        return asyncio.run(work())
    except KeyboardInterrupt:
        print("manas360: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from manas360.web import to_app_error

        error = to_app_error(exc)
        if error.status == 503:
            print(f"manas360: {error.message}: {exc}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        raise


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from manas360.db import migrate

    async def work() -> int:
        applied = await migrate(settings)
        print(f"applied {len(applied)} migration(s): {', '.join(applied)}" if applied else "database is up to date")
        return 0

    return _run(settings, work)


def _seed(settings: Settings, args: argparse.Namespace) -> int:
    from manas360.services.orm import orm
    from manas360.services.seeding import seed_reference_data, seed_superadmin

    async def work() -> int:
        async with orm(settings):
            report = await seed_reference_data()
            print(f"reference data: +{report.roles} roles, +{report.permissions} permissions, "
                  f"+{report.plans} plans, +{report.features} features, "
                  f"+{report.role_permissions} role permissions, +{report.plan_features} plan features")
            if settings.superadmin_email and settings.superadmin_password:
                outcome = await seed_superadmin(email=settings.superadmin_email, password=settings.superadmin_password,
                                                bcrypt_cost=settings.bcrypt_cost)
                print(f"superadmin {settings.superadmin_email.strip().lower()}: {outcome}")
            elif settings.superadmin_email or settings.superadmin_password:
                print("superadmin: not configured (set both SUPERADMIN_EMAIL and SUPERADMIN_PASSWORD)", file=sys.stderr)
                return EXIT_CONFIG
        return 0

    return _run(settings, work)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from manas360.server import serve

    return serve(settings, host=args.host, port=args.port, workers=args.workers)


if __name__ == "__main__":
    sys.exit(main())
