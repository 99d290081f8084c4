"""The `manas360` command: serve, migrate, seed, warm-cache, maintenance, users, keys.

Every subcommand but `keys generate` loads and validates settings first; a bad or unsafe setting is one line
on stderr and exit status 2, an unreachable store exit status 1 — never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from manas360.security.signing import ASYMMETRIC, KeyConfigError, generate_private_key
from manas360.server import EXIT_CONFIG, EXIT_UNAVAILABLE  # `serve` and the commands exit alike
from manas360.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:  # the commands import their services lazily, when run
    from manas360.services.ops.maintenance import OnBatch
    from manas360.services.ops.seeding import SuperadminOutcome

PROMOTE_FLAG = "--promote-existing-superadmin"

EXIT_FAILED = 1  # a job failed (maintenance, synthetic seeding)
EXIT_REFUSED = 1  # seed will not take over an existing account without the opt-in
EXIT_NOT_READY = 1  # the database does not exist or is not migrated (`manas360 migrate` fixes both)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "keys":  # needs no configuration: an operator makes keys before setting them
        return _generate_key(args)
    if args.command == "serve":
        from manas360.early_stop import record_early_stops

        record_early_stops()  # as early as possible: a SIGTERM from here on stops start-up cleanly
    else:
        # The shared metrics directory belongs to a running server (`serve` prepares it);
        # a one-shot command inheriting the variable (a unit file, a benchmark) would write
        # its own samples there, or crash at import when the directory is gone.
        from manas360.metrics_dir import MULTIPROC_ENV  # no prometheus-client import on the way

        os.environ.pop(MULTIPROC_ENV, None)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"manas360: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    command: Callable[[Settings, argparse.Namespace], int] = args.func  # set_defaults(func=...) below
    return command(settings, args)


def _parser() -> argparse.ArgumentParser:
    from manas360 import __version__
    from manas360.cli_users import add_users_command

    parser = _Parser(prog="manas360", description=__doc__.splitlines()[0], epilog=CONFIGURATION_EPILOG)
    parser.add_argument(
        "--version", action="version", version=f"manas360 {__version__}", help="print the version and exit"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")

    serve = sub.add_parser("serve", help="serve the API with the configured workers")
    serve.add_argument("--host", help="address to listen on (default: the HOST setting, 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="port to listen on (default: the PORT setting, 8000)")
    serve.add_argument("--workers", type=_workers, help="worker processes, 1..256 (default: the WORKERS setting, 2)")
    serve.add_argument("--wait", type=_count, default=0, metavar="S", help=WAIT_HELP)
    serve.set_defaults(func=_serve)

    migrate = sub.add_parser("migrate", help="create the database if missing and apply migrations (idempotent)")
    migrate.add_argument(
        "--wait",
        type=_count,
        default=0,
        metavar="S",
        help="wait up to S seconds for PostgreSQL to accept connections, for a migration that "
        "starts beside the database (compose, a Kubernetes Job; default 0: no wait)",
    )
    migrate.set_defaults(func=_migrate)

    seed = sub.add_parser(
        "seed",
        help="seed reference data and the superadmin (idempotent)",
        description="Insert missing reference data and create the superadmin SUPERADMIN_EMAIL with "
        "SUPERADMIN_PASSWORD, or bring it to that password. Changing a password or role revokes "
        "the account's sessions. An existing account of another role is refused (exit 1) unless "
        f"{PROMOTE_FLAG} is given.",
    )
    seed.add_argument(
        PROMOTE_FLAG,
        action="store_true",
        help="make SUPERADMIN_EMAIL superadmin even if it is an existing account of another role "
        "(its password is set to SUPERADMIN_PASSWORD and its sessions are revoked; default: off)",
    )
    seed.add_argument(
        "--users",
        type=_count,
        default=0,
        metavar="N",
        help="also make sure synthetic users 1..N exist (staging and load tests; default 0: none)",
    )
    seed.add_argument(
        "--batch-size", type=_positive, metavar="B", help="synthetic users per transaction (default 10000)"
    )
    seed.add_argument("--wait", type=_count, default=0, metavar="S", help=WAIT_HELP)
    seed.set_defaults(func=_seed)

    maintenance = sub.add_parser("maintenance", help="run a maintenance job (idempotent; for cron)")
    jobs = maintenance.add_subparsers(dest="job", required=True, metavar="<job>")
    jobs.add_parser("refresh-views", help="refresh the materialized views concurrently")
    jobs.add_parser("cleanup-tokens", help="delete expired refresh tokens, sessions and revoked-jti rows")
    archive = jobs.add_parser("archive-audit", help="move audit rows older than --days to audit_logs_archive")
    archive.add_argument("--days", dest="audit_days", type=_count, help="keep this many days of audit (default 90)")
    tokens = jobs.choices["cleanup-tokens"]
    prune = jobs.add_parser("prune-login-attempts", help="delete login attempts older than --days")
    prune.add_argument(
        "--days", dest="login_attempt_days", type=_count, help="keep this many days of login attempts (default 30)"
    )
    blocks = jobs.add_parser("prune-rate-limit-logs", help="delete rate-limit block rows older than --days")
    blocks.add_argument(
        "--days", dest="rate_limit_log_days", type=_count, help="keep this many days of block rows (default 14)"
    )
    mails = jobs.add_parser(
        "prune-mail",
        help="discard waiting mail whose link died; delete outbox mail delivered, "
        "discarded or given up more than --days ago",
    )
    mails.add_argument(
        "--days", dest="mail_days", type=_count, help="keep this many days of finished mail (default 30)"
    )
    account_tokens = jobs.add_parser(
        "prune-account-tokens", help="delete reset/verification tokens expired more than --days ago"
    )
    account_tokens.add_argument(
        "--days",
        dest="account_token_days",
        type=_count,
        help="keep tokens expired fewer than this many days (default 7)",
    )
    purge = jobs.add_parser(
        "purge-deleted",
        help="erase the accounts whose deletion grace is over (every personal value; the email becomes free)",
    )
    replay = jobs.add_parser(
        "replay-erasures",
        help="after a restore from backup: erase again every account ERASURE_LEDGER_PATH lists (serve does it too)",
    )
    every = jobs.add_parser("all", help="every job above but replay-erasures, with their defaults")
    every.add_argument("--audit-days", dest="audit_days", type=_count, help="archive-audit's --days (default 90)")
    every.add_argument(
        "--login-attempt-days", dest="login_attempt_days", type=_count, help="prune-login-attempts' --days (default 30)"
    )
    every.add_argument(
        "--rate-limit-log-days",
        dest="rate_limit_log_days",
        type=_count,
        help="prune-rate-limit-logs' --days (default 14)",
    )
    every.add_argument("--mail-days", dest="mail_days", type=_count, help="prune-mail's --days (default 30)")
    every.add_argument(
        "--account-token-days", dest="account_token_days", type=_count, help="prune-account-tokens' --days (default 7)"
    )
    for job in (tokens, archive, prune, blocks, mails, account_tokens, every):
        job.add_argument("--batch-size", type=_positive, help="rows per transaction (default 5000)")
    for job in (purge, replay):
        job.add_argument("--batch-size", type=_positive, help="accounts per transaction (default 1000)")
    maintenance.set_defaults(func=_maintenance)

    warm = sub.add_parser("warm-cache", help="load active users' contexts into Redis (safe while serving)")
    warm.add_argument(
        "--active-days",
        type=_count,
        default=None,
        help="only users who logged in within this many days (default: every active user)",
    )
    warm.add_argument(
        "--batch-size",
        type=_positive,
        default=2000,
        help="users loaded per PostgreSQL query and Redis pipeline (default 2000)",
    )
    warm.set_defaults(func=_warm_cache)

    add_users_command(sub, run=_run, epilog=CONFIGURATION_EPILOG, formatter=argparse.HelpFormatter)

    keys = sub.add_parser("keys", help="signing keys for JWT_PRIVATE_KEYS")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="<action>")
    generate = key_commands.add_parser(
        "generate", help='print a new private key as one JSON element of JWT_PRIVATE_KEYS ({"kid", "pem"})'
    )
    generate.add_argument(
        "--algorithm",
        choices=ASYMMETRIC,
        default="EdDSA",
        help="EdDSA (Ed25519) or ES256 (ECDSA P-256); it must match JWT_ALGORITHM (default EdDSA)",
    )
    generate.add_argument("--kid", help="the key id tokens will name (default: <algorithm>-<date>-<random>)")
    _every_parser_says_where_configuration_comes_from(parser)
    return parser


def _generate_key(args: argparse.Namespace) -> int:
    try:
        element = generate_private_key(args.algorithm, args.kid)
    except KeyConfigError as exc:
        print(f"manas360: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(json.dumps(element))
    return 0


WAIT_HELP = (
    "first wait up to S seconds for PostgreSQL to answer with every migration applied (a migrate "
    "running beside it: compose, Kubernetes), then go on; default 0: no wait"
)

CONFIGURATION_EPILOG = (
    "Configuration comes from the environment: every setting of the README's Configuration table "
    "(DATABASE_URL, REDIS_URL, JWT_SECRET, ...) by its name, each secret also as NAME_FILE (a file holding "
    "it), over an optional .env file (ENV_FILE, default ./.env); `python -m manas360.settings` lists them."
)


def _every_parser_says_where_configuration_comes_from(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                child.epilog = child.epilog or CONFIGURATION_EPILOG
                _every_parser_says_where_configuration_comes_from(child)


class _Parser(argparse.ArgumentParser):
    """argparse with the commands' error convention: one line on stderr, exit 2 (argparse
    prints the whole usage first, several lines for the bigger commands)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _whole_number(*, minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse `type`: a whole number in minimum..maximum, refused in words that say so
    (argparse names the option: "argument --users: expects a whole number >= 0, not 'abc'")."""
    accepted = f"a whole number >= {minimum}" if maximum is None else f"a whole number {minimum}..{maximum}"

    def parse(value: str) -> int:
        try:
            number = int(value.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expects {accepted}, not {value!r}") from None
        if number < minimum or (maximum is not None and number > maximum):
            raise argparse.ArgumentTypeError(f"expects {accepted}, not {number}")
        return number

    parse.__name__ = accepted  # what argparse would print for any other failure
    return parse


_count = _whole_number(minimum=0)
_positive = _whole_number(minimum=1)
_port = _whole_number(minimum=1, maximum=65535)
_workers = _whole_number(minimum=1, maximum=256)  # the bounds of WORKERS


def _run(settings: Settings, work: Callable[[], Coroutine[Any, Any, int]], *, needs_schema: bool = True) -> int:
    """Run `work` with logging configured, turning store outages, a missing or unmigrated
    database and any other failure into one line on stderr (exit 1), never a traceback.

    `needs_schema`: check first that the database exists and is migrated (every command
    but `migrate`, which makes it so), the one place the commands share for it.
    """
    from loguru import logger

    from manas360.db import check_schema, schema_problem
    from manas360.logs import configure_logging

    async def checked() -> int:
        if needs_schema:
            await check_schema(settings)
        return await work()

    configure_logging(settings)
    try:
        return asyncio.run(checked())
    except KeyboardInterrupt:
        print("manas360: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from manas360.http.errors import to_app_error

        problem = schema_problem(exc, settings)
        if problem is not None:
            print(f"manas360: {problem}", file=sys.stderr)
            return EXIT_NOT_READY
        error = to_app_error(exc)
        if error.status == 503:
            print(f"manas360: {error.message}: {_first_line(exc)}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        logger.opt(exception=exc).debug("the command failed")  # the traceback, at LOG_LEVEL=DEBUG only
        print(f"manas360: failed: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from manas360.db import migrate

    async def work() -> int:
        if args.wait:
            await _wait_for_postgres(settings, seconds=args.wait)
        applied = await migrate(settings)
        print(f"applied {len(applied)} migration(s): {', '.join(applied)}" if applied else "database is up to date")
        return 0

    return _run(settings, work, needs_schema=False)


async def _wait_for_postgres(settings: Settings, *, seconds: float) -> None:
    """Until PostgreSQL accepts a connection (refused, unresolvable or starting up: try again),
    at most `seconds`; then the last failure is the command's."""
    import asyncpg

    from manas360.db import connect

    deadline = time.monotonic() + seconds
    while True:
        try:
            conn = await connect(settings, database="postgres", timeout=min(5.0, seconds))
        except (TimeoutError, OSError, asyncpg.CannotConnectNowError):
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.5)
        else:
            await conn.close()
            return


def _seed(settings: Settings, args: argparse.Namespace) -> int:
    from manas360.configured_store import open_configured_store
    from manas360.db import orm
    from manas360.services.ops.seeding import SeedError, seed
    from manas360.store import close_store

    email, password = settings.superadmin_email, settings.superadmin_password.get_secret_value()
    if bool(email) != bool(password) or (args.promote_existing_superadmin and not email):
        print(
            "manas360: configuration error: set both SUPERADMIN_EMAIL and SUPERADMIN_PASSWORD"
            + (" (--promote-existing-superadmin needs them)" if args.promote_existing_superadmin else ""),
            file=sys.stderr,
        )
        return EXIT_CONFIG
    if args.wait:
        try:
            _wait_until_migrated(settings, seconds=args.wait)
        except KeyboardInterrupt:
            print("manas360: interrupted", file=sys.stderr)
            return 130

    async def work() -> int:
        store = open_configured_store(settings)
        try:
            async with orm(settings) as db:
                report = await seed(
                    db=db,
                    settings=settings,
                    store=store,
                    email=email,
                    password=password,
                    promote_existing=args.promote_existing_superadmin,
                )
        except SeedError as exc:
            print(f"manas360: seed failed: {exc}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            await close_store(store)
        print(
            f"reference data: +{report.roles} roles, +{report.permissions} permissions, "
            f"+{report.plans} plans, +{report.features} features, "
            f"+{report.role_permissions} role permissions, +{report.plan_features} plan features"
        )
        if report.superadmin is not None and (refused := _print_superadmin(report.superadmin)):
            return refused
        if args.users:
            return await _seed_users(settings, users=args.users, batch_size=args.batch_size)
        return 0

    return _run(settings, work)


def _print_superadmin(outcome: SuperadminOutcome) -> int:
    """One line on stdout for what seeding did to the superadmin (never the password);
    a refusal or a cache that could not be updated is one line on stderr."""
    if outcome.status == "refused":
        print(
            f"manas360: seed refused: {outcome.email} is an existing {outcome.previous_role} account; "
            "to make it superadmin deliberately (its password becomes SUPERADMIN_PASSWORD, its sessions "
            f"are revoked) run `manas360 seed {PROMOTE_FLAG}`",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    line = f"superadmin {outcome.email}: {outcome.status}"
    if outcome.changes:
        line += f" ({', '.join(outcome.changes)})"
    if outcome.sessions_revoked:
        line += "; every session and access token of the account revoked"
    print(line)
    if outcome.cache_error:
        print(
            f"manas360: warning: Redis unreachable ({outcome.cache_error}); the revocation of {outcome.email} "
            f"is committed in PostgreSQL, but servers' cached copies (its access tokens, its role) may be "
            f"believed for up to {outcome.cache_ttl_s} s",
            file=sys.stderr,
        )
    return 0


async def _seed_users(settings: Settings, *, users: int, batch_size: int | None) -> int:
    import asyncpg

    from manas360.services.ops.synthetic import SYNTHETIC_PASSWORD, seed_synthetic_users

    progress = _Progress(total=users, unit="users")
    try:
        report = await seed_synthetic_users(
            settings=settings, count=users, batch_size=batch_size, on_batch=lambda r: progress.update(r.processed)
        )
    except asyncio.CancelledError:
        progress.close()
        print(
            f"synthetic users: interrupted after {progress.done} of {users} (whole batches only); run again to finish",
            file=sys.stderr,
        )
        raise
    except (asyncpg.PostgresError, LookupError) as exc:
        progress.close()
        print(f"manas360: seeding users failed: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    progress.close()
    print(
        f"synthetic users: {report.created} created, {report.skipped} already existed, "
        f"{report.subscriptions} subscriptions, {report.elapsed_s:.1f}s ({report.rate:,.0f} users/s); "
        f"password {SYNTHETIC_PASSWORD!r}"
    )
    return 0


class _Progress:
    """A progress bar on a terminal (stderr), one plain line per update otherwise."""

    def __init__(self, *, total: int, unit: str, stream: TextIO | None = None) -> None:
        self.total, self.unit, self.done = total, unit, 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()

    def update(self, done: int) -> None:
        self.done = done
        elapsed = time.monotonic() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        share = done / self.total if self.total else 1.0
        if self.tty:
            eta = (self.total - done) / rate if rate else 0.0
            bar = "#" * int(share * 30)
            self.stream.write(
                f"\r[{bar:<30}] {done:,}/{self.total:,} {self.unit} {share:4.0%} {rate:,.0f}/s ETA {eta:.0f}s "
            )
        else:
            self.stream.write(f"{done}/{self.total} {self.unit} ({share:.0%}) {elapsed:.1f}s {rate:.0f}/s\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.done:
            self.stream.write("\n")
            self.stream.flush()


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _warm_cache(settings: Settings, args: argparse.Namespace) -> int:
    from manas360.clock import Clock
    from manas360.configured_store import open_configured_store
    from manas360.db import orm
    from manas360.services.ops.warmup import count_candidates, warm_cache
    from manas360.store import close_store

    async def work() -> int:
        store = open_configured_store(settings, socket_timeout_s=max(settings.redis_socket_timeout_s, 5.0))
        try:
            async with orm(settings) as db:
                total = await count_candidates(db=db, active_days=args.active_days)
                progress = _Progress(total=total, unit="users")
                report = await warm_cache(
                    db=db,
                    settings=settings,
                    store=store,
                    clock=Clock(),
                    active_days=args.active_days,
                    batch_size=args.batch_size,
                    on_batch=progress.update,
                )
                progress.close()
        finally:
            await close_store(store)
        print(
            f"warm-cache: {report.users} users in {report.batches} batches, {report.elapsed_s:.1f}s "
            f"({report.rate:,.0f} users/s)"
        )
        return 0

    return _run(settings, work)


def _maintenance(settings: Settings, args: argparse.Namespace) -> int:
    import asyncpg

    from manas360.services.ops import maintenance

    names = maintenance.JOBS if args.job == "all" else (args.job,)
    options = {
        name: value
        for name in (
            "audit_days",
            "login_attempt_days",
            "rate_limit_log_days",
            "mail_days",
            "account_token_days",
            "batch_size",
        )
        if (value := getattr(args, name, None)) is not None
    }

    def on_batch(job: str) -> OnBatch:
        return lambda rows, total: print(f"{job}: batch of {rows}, {total} so far", flush=True)

    async def work() -> int:
        from manas360.configured_store import open_configured_store
        from manas360.store import close_store

        failed = 0
        store = open_configured_store(settings)
        try:
            async with maintenance.connect(settings) as conn:
                for job in names:
                    try:
                        result = await maintenance.run_job(
                            conn=conn, job=job, on_batch=on_batch(job), settings=settings, store=store, **options
                        )
                    except asyncpg.PostgresError as exc:
                        print(f"manas360: maintenance {job} failed: {_one_line(exc)}", file=sys.stderr)
                        failed += 1
                        continue
                    if result.skipped:
                        print(f"{job}: skipped, another run of it is in progress")
                    else:
                        done = ", ".join(f"{n} {what}" for what, n in result.counts.items())
                        print(f"{job}: {done} ({result.elapsed_s:.2f}s)")
        except asyncpg.PostgresError as exc:  # e.g. the database does not exist
            print(f"manas360: maintenance failed: {_one_line(exc)}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            await close_store(store)
        return EXIT_FAILED if failed else 0

    return _run(settings, work)


def _wait_until_migrated(settings: Settings, *, seconds: float) -> None:
    """seed and serve --wait: until the database exists, answers and has every migration
    applied, at most `seconds` (a SIGTERM ends the wait); then the command goes on and reports
    whatever is still wrong in its usual one line."""
    from manas360.db import check_schema
    from manas360.early_stop import early_stop_requested

    deadline = time.monotonic() + seconds
    while not early_stop_requested():
        try:
            asyncio.run(check_schema(settings))
            return
        except Exception:  # not there yet: unreachable, starting up, missing or behind
            if time.monotonic() >= deadline:
                return
            time.sleep(0.5)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from manas360.server import serve

    if args.wait:
        _wait_until_migrated(settings, seconds=args.wait)

    return serve(settings, host=args.host, port=args.port, workers=args.workers)


if __name__ == "__main__":
    sys.exit(main())
