"""`manas360 users <action> EMAIL`: an operator's writes on one account without an API token
(manas360.services.admin.operator): the same effects and invalidations as the admin API, on the
very next request of every worker, audited with the request id `cli`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from manas360.settings import Settings

Run = Callable[[Settings, Callable[[], Coroutine[Any, Any, int]]], int]

EXIT_NO_USER = 1  # no account has that address (or the write was refused: an unknown role or plan)

ACTIONS: dict[str, str] = {
    "show": "print the account as the admin API shows it (role, plan, status, locks, MFA) as JSON",
    "unlock": "lift every lock of the account (every source's and the wrong-code ceiling)",
    "disable": "disable the account: every session, access token and one-time link dies at once",
    "enable": "enable a disabled account (its sessions stay revoked: the user logs in again)",
    "revoke-sessions": "revoke every session and access token of the account (logs it out everywhere)",
    "reset-mfa": "turn the account's MFA off (secret, recovery codes); revokes every session; mails the owner",
    "set-role": "give the account ROLE (guest, user, subscriber, admin, superadmin); its cached context is dropped",
    "set-plan": "put the account on PLAN from now (free ends the paid one); its cached context is dropped",
    "schedule-deletion": "schedule the account's erasure after ACCOUNT_DELETION_GRACE_S (status pending_deletion, "
    "every session revoked, the owner told; only an operator or administrator cancels it)",
    "cancel-deletion": "cancel a pending deletion: the account gets back the status it had",
}


def add_users_command(sub: Any, *, run: Run, epilog: str, formatter: type[argparse.HelpFormatter]) -> None:
    users = sub.add_parser(
        "users",
        help="an operator's changes to one account: show, unlock, disable, enable, revoke-sessions, "
        "reset-mfa, set-role, set-plan, schedule-deletion, cancel-deletion",
        description="Act on one account by its email address, with the same effects as the admin API (committed "
        "in PostgreSQL, audited with the request id `cli`, then every worker's cache told). No API "
        "token needed: whoever runs this holds the database credentials. Exit 1 when no account has "
        "that address.",
        epilog=epilog,
        formatter_class=formatter,
    )
    actions = users.add_subparsers(dest="action", required=True, metavar="<action>")
    for action, help_text in ACTIONS.items():
        parser = actions.add_parser(
            action,
            help=help_text,
            description=help_text[0].upper() + help_text[1:] + ".",
            epilog=epilog,
            formatter_class=formatter,
        )
        parser.add_argument("email", metavar="EMAIL", help="the account's email address (any case)")
        if action == "set-role":
            parser.add_argument("role", metavar="ROLE", help="the new role's name")
        if action == "set-plan":
            parser.add_argument("plan", metavar="PLAN", help="the plan's name (free, basic, premium, ...)")
            parser.add_argument(
                "--until",
                type=_moment,
                default=None,
                metavar="WHEN",
                help="when the plan ends, ISO 8601 with a zone, e.g. 2027-01-31T00:00:00Z (default: open-ended)",
            )
        parser.set_defaults(func=lambda settings, args: _users(settings, args, run))


def _moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects an ISO 8601 moment, not {value!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"expects a time zone (e.g. Z or +05:30) in {value!r}")
    return moment


def _users(settings: Settings, args: argparse.Namespace, run: Run) -> int:
    import orjson

    from manas360.configured_store import open_configured_store
    from manas360.db import Database, orm
    from manas360.errors import AppError
    from manas360.logs import request_id_var
    from manas360.models import ACCOUNT_ACTIVE, ACCOUNT_DISABLED
    from manas360.services.admin import operator
    from manas360.store import close_store

    async def act(db: Database) -> str:
        store = open_configured_store(settings)
        try:
            email = args.email
            if args.action == "show":
                return orjson.dumps(await operator.show(db=db, email=email), option=orjson.OPT_INDENT_2).decode()
            if args.action == "unlock":
                await operator.unlock(db=db, settings=settings, store=store, email=email)
                return f"{email}: unlocked"
            if args.action in ("disable", "enable"):
                status = ACCOUNT_DISABLED if args.action == "disable" else ACCOUNT_ACTIVE
                await operator.set_status(db=db, settings=settings, store=store, email=email, status=status)
                return f"{email}: {status}" + (
                    "; every session and token revoked" if status == ACCOUNT_DISABLED else ""
                )
            if args.action == "revoke-sessions":
                await operator.revoke_sessions(db=db, settings=settings, store=store, email=email)
                return f"{email}: every session and token revoked"
            if args.action == "reset-mfa":
                await operator.reset_mfa(db=db, settings=settings, store=store, email=email)
                return f"{email}: MFA off; every session revoked"
            if args.action == "schedule-deletion":
                when = await operator.schedule_deletion(db=db, settings=settings, store=store, email=email)
                return f"{email}: pending_deletion until {when.isoformat()}; every session and token revoked"
            if args.action == "cancel-deletion":
                restored = await operator.cancel_deletion(db=db, settings=settings, store=store, email=email)
                return f"{email}: {restored}"
            if args.action == "set-role":
                user = await operator.set_role(db=db, settings=settings, store=store, email=email, role=args.role)
                return f"{email}: role {user.role}"
            user = await operator.set_plan(
                db=db, settings=settings, store=store, email=email, plan=args.plan, ends_at=args.until
            )
            return f"{email}: plan {user.plan}" + (f" until {args.until.isoformat()}" if args.until else "")
        finally:
            await close_store(store)

    async def work() -> int:
        request_id_var.set(operator.CLI_REQUEST_ID)
        try:
            async with orm(settings) as db:
                line = await act(db)
        except AppError as exc:
            if exc.status >= 500:
                raise  # a store outage: the commands' one line and exit status
            detail = "; ".join(f"{field} {problem}" for field, problem in (exc.extra.get("fields") or {}).items())
            print(f"manas360: {detail or exc.message}", file=sys.stderr)
            return EXIT_NO_USER
        print(line)
        return 0

    return run(settings, work)
