"""The app's long-lived collaborators, built once by `create_app` and handed out in parts.

Services never receive this container: each names the parts it uses as keyword arguments
(`settings=`, `db=`, `store=`, `codec=`, `catalog=`, `clock=`, `box=`). Building it does no I/O; the
store's connections open lazily on first use and close in the app's after_server_stop
listener.
"""

from __future__ import annotations

from dataclasses import dataclass

from manas360.clock import Clock
from manas360.configured_store import open_configured_store
from manas360.db import Database
from manas360.security.jwt import AccessTokenCodec
from manas360.security.secretbox import SecretBox
from manas360.services.access.catalog import CatalogHolder
from manas360.services.auth.mfa_enrolment import build_secret_box
from manas360.services.auth.tokens import build_codec
from manas360.services.integration.webhooks import build_webhook_courier
from manas360.services.mail.outbox import Outbox, build_mail_courier
from manas360.settings import Settings
from manas360.store import Store


@dataclass(frozen=True, slots=True)
class Collaborators:
    settings: Settings
    db: Database
    """PostgreSQL: its pool, opened and closed by the app's listeners."""
    store: Store
    codec: AccessTokenCodec
    catalog: CatalogHolder
    clock: Clock
    secret_box: SecretBox
    """Seals and opens the TOTP secrets at rest."""
    outbox: Outbox
    """The mail sender."""
    webhooks: Outbox
    """The webhook sender (idle without WEBHOOK_URL)."""


def build_collaborators(settings: Settings) -> Collaborators:
    """Every collaborator as the settings configure it (no I/O)."""
    db = Database(settings)
    return Collaborators(
        settings=settings,
        db=db,
        store=open_configured_store(settings),
        codec=build_codec(settings),
        catalog=CatalogHolder(db),
        clock=Clock(),
        secret_box=build_secret_box(settings),
        outbox=Outbox(settings=settings, courier=build_mail_courier(settings), db=db),
        webhooks=Outbox(settings=settings, courier=build_webhook_courier(settings), db=db),
    )
