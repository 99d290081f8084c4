"""Passkeys (WebAuthn): registering, listing, renaming and removing them, and the ceremonies'
challenges. The login and the re-authentication with a passkey are flows into the one gate
(manas360.services.auth.passkey_login).

- Every ceremony starts with options and a challenge: 32 random bytes the authenticator signs,
  stored with its purpose (`register`, `login`, `reauthenticate`) and, when known, its user;
  the client gets a `challenge_id` (256 random bits, stored only as its SHA-256) to send back
  with the authenticator's answer. A challenge is spent by its first use, lives
  CHALLENGE_TTL_S by the database's clock, and dies with the account's credential epoch
  (every security event), like every one-time token.
- Verification (attestation, COSE keys, signatures, origins, RP ID hash) is py_webauthn's;
  this module decides what to ask for and what to keep. Attestation is `none`: the service
  trusts no vendor list, it only needs the public key.
- Registering is a step-up operation, only for an account whose email is verified, up to
  MAX_PASSKEYS per account; the owner is mailed. Removing one is a security event: the
  credential epoch moves, every other session is revoked, the owner is mailed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

from tortoise.backends.base.client import BaseDBAsyncClient
from webauthn import generate_authentication_options, generate_registration_options, verify_registration_response
from webauthn.helpers import options_to_json_dict
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from manas360.clock import db_now
from manas360.db import Database
from manas360.errors import EmailNotVerified, InvalidCredentials, InvalidToken, NotFound, PasskeyLimitReached
from manas360.queries.accounts.users import Credentials
from manas360.queries.auth import passkeys as queries
from manas360.queries.auth.passkeys import Challenge, Passkey
from manas360.security.secretbox import derive_key
from manas360.services.accounts import users
from manas360.services.admin import audit
from manas360.services.auth import events, stepup
from manas360.services.auth.events import Event
from manas360.services.auth.principal import Principal
from manas360.services.auth.sessions import Client
from manas360.settings import Settings
from manas360.store import Store

CHALLENGE_TTL_S = 300
MAX_PASSKEYS = 10
DEFAULT_NAME = "Passkey"
REGISTER, LOGIN, REAUTHENTICATE = "register", "login", "reauthenticate"
_CHALLENGE_BYTES = 32
_DECOY_PURPOSE = b"manas360 passkey decoy credential ids v1"
_DECOY_ID_BYTES = 32
_KNOWN_TRANSPORTS = frozenset(t.value for t in AuthenticatorTransport)
UNVERIFIED = "The passkey could not be verified"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Ceremony:
    """What the client gets to start a ceremony: the handle to send back, and the options
    (PublicKeyCredentialCreationOptionsJSON or PublicKeyCredentialRequestOptionsJSON)."""

    challenge_id: str
    options: dict[str, Any]


def checked(verify: Callable[[], T]) -> T:
    """Run one of py_webauthn's parses or checks on what the client sent: whatever it raises
    (its own errors, or base64, CBOR, struct and key errors on malformed bytes) is the
    client's bytes failing to verify, 401 InvalidCredentials, never a 500."""
    try:
        return verify()
    except Exception as exc:  # noqa: BLE001 -- the library raises many types for hostile input
        raise InvalidCredentials(UNVERIFIED) from exc


def handle_digest(challenge_id: str) -> bytes:
    # Unsalted SHA-256 is enough: the handle is 256 random bits, nothing to brute-force.
    return hashlib.sha256(challenge_id.encode()).digest()


def user_handle(user_id: str) -> bytes:
    """The WebAuthn user handle of an account: its id's 16 bytes (no personal data)."""
    return uuid.UUID(user_id).bytes


async def new_challenge(
    conn: BaseDBAsyncClient, *, purpose: str, user_id: str | None, name: str | None = None, for_email: bool = False
) -> tuple[str, bytes]:
    """(challenge_id, challenge) of a new ceremony, stored in the caller's transaction."""
    challenge_id, challenge = secrets.token_urlsafe(32), secrets.token_bytes(_CHALLENGE_BYTES)
    await queries.insert_challenge(
        conn=conn,
        handle_hash=handle_digest(challenge_id),
        purpose=purpose,
        user_id=user_id,
        challenge=challenge,
        name=name,
        ttl_s=CHALLENGE_TTL_S,
        for_email=for_email,
    )
    return challenge_id, challenge


async def take_challenge(*, db: Database, challenge_id: str, purpose: str, user_id: str | None = None) -> Challenge:
    """Spend a live challenge of `purpose` in a transaction of its own (a failed verification
    after it still leaves it spent); InvalidToken when it is not live, or is bound to a user
    other than `user_id` (when given)."""
    async with db.transaction() as conn:
        challenge = await queries.take_challenge(conn=conn, handle_hash=handle_digest(challenge_id), purpose=purpose)
    if challenge is None or (user_id is not None and challenge.user_id != user_id):
        raise InvalidToken()
    return challenge


def _descriptors(
    credentials: list[tuple[bytes, list[str]]], *, transports: bool = True
) -> list[PublicKeyCredentialDescriptor]:
    """Credential descriptors; without `transports` (an anonymous sign-in's allow list), ids
    only, so real entries look like the decoys."""
    return [
        PublicKeyCredentialDescriptor(
            id=credential_id,
            transports=([AuthenticatorTransport(t) for t in kept if t in _KNOWN_TRANSPORTS] or None)
            if transports
            else None,
        )
        for credential_id, kept in credentials
    ]


async def register_options(
    *, db: Database, settings: Settings, principal: Principal, name: str | None, client: Client
) -> Ceremony:
    """Options to create a passkey for the caller (step-up; verified email; below the limit):
    a discoverable credential and user verification preferred, the caller's passkeys excluded."""
    party = settings.webauthn
    async with db.transaction() as conn:
        account = await _lock_for_registration(conn, settings=settings, principal=principal)
        existing = await queries.credential_ids(conn=conn, user_id=account.user_id)
        if len(existing) >= MAX_PASSKEYS:
            raise PasskeyLimitReached()
        challenge_id, challenge = await new_challenge(conn, purpose=REGISTER, user_id=account.user_id, name=name)
        user = await users.get_held_user(conn, user_id=account.user_id)
    options = generate_registration_options(
        rp_id=party.rp_id,
        rp_name=party.rp_name,
        user_name=account.email,
        user_id=user_handle(account.user_id),
        user_display_name=user.display_name or account.email,
        challenge=challenge,
        timeout=CHALLENGE_TTL_S * 1000,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=_descriptors(existing),
    )
    return Ceremony(challenge_id=challenge_id, options=options_to_json_dict(options))


async def register(
    *,
    db: Database,
    settings: Settings,
    principal: Principal,
    challenge_id: str,
    credential: dict[str, Any],
    name: str | None,
    client: Client,
) -> Passkey:
    """Verify the authenticator's answer to a register challenge and keep the new passkey.
    InvalidToken for a challenge that is not live or not the caller's, InvalidCredentials when
    verification fails or the credential is already registered."""
    party = settings.webauthn
    async with db.transaction() as conn:  # refused before the challenge is spent (checked again below)
        await _lock_for_registration(conn, settings=settings, principal=principal)
    challenge = await take_challenge(db=db, challenge_id=challenge_id, purpose=REGISTER, user_id=principal.user_id)
    verified = checked(
        lambda: verify_registration_response(
            credential=credential,
            expected_challenge=challenge.challenge,
            expected_rp_id=party.rp_id,
            expected_origin=list(party.origins),
        )
    )
    transports = credential.get("response", {}).get("transports") if isinstance(credential, dict) else None
    kept_transports = [t for t in transports if t in _KNOWN_TRANSPORTS][:8] if isinstance(transports, list) else []
    async with db.transaction() as conn:
        account = await _lock_for_registration(conn, settings=settings, principal=principal)
        if await queries.count(conn=conn, user_id=account.user_id) >= MAX_PASSKEYS:
            raise PasskeyLimitReached()
        passkey = await queries.insert(
            conn=conn,
            user_id=account.user_id,
            credential_id=verified.credential_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            transports=kept_transports,
            aaguid=verified.aaguid if verified.aaguid else None,
            backup_eligible=verified.credential_device_type is CredentialDeviceType.MULTI_DEVICE,
            backed_up=verified.credential_backed_up,
            user_verified=verified.user_verified,
            name=name or challenge.name or DEFAULT_NAME,
        )
        if passkey is None:
            raise InvalidCredentials("This passkey is already registered")
        await audit.record(
            conn,
            action=audit.PASSKEY_ADDED,
            actor_id=account.user_id,
            target_user_id=account.user_id,
            ip=client.ip,
            after={"passkey_id": passkey.id, "user_verified": verified.user_verified},
        )
        await events.notify(
            conn,
            settings=settings,
            user_id=account.user_id,
            email=account.email,
            notice="passkey_added",
            client=client,
            when=await db_now(conn),
        )
    return passkey


async def list_passkeys(*, db: Database, principal: Principal) -> list[Passkey]:
    return await queries.list_passkeys(conn=db.connection, user_id=principal.user_id)


async def rename(*, db: Database, principal: Principal, passkey_id: str, name: str, client: Client) -> Passkey:
    """Rename one of the caller's passkeys; NotFound for anyone else's."""
    async with db.transaction() as conn:
        passkey = await queries.rename(conn=conn, user_id=principal.user_id, passkey_id=passkey_id, name=name)
        if passkey is None:
            raise NotFound()
        await audit.record(
            conn,
            action=audit.PASSKEY_RENAMED,
            actor_id=principal.user_id,
            target_user_id=principal.user_id,
            ip=client.ip,
            after={"passkey_id": passkey_id},
        )
    return passkey


async def remove(
    *, db: Database, settings: Settings, store: Store, principal: Principal, passkey_id: str, client: Client
) -> None:
    """Remove one of the caller's passkeys (step-up): a security event that keeps the caller's
    session and revokes the others; NotFound for anyone else's."""
    async with db.transaction() as conn:
        account = (await stepup.lock_caller(conn, settings=settings, principal=principal)).account
        if await queries.delete(conn=conn, user_id=account.user_id, passkey_id=passkey_id) is None:
            raise NotFound()
        revoked = await events.record(
            conn,
            settings=settings,
            user_id=account.user_id,
            event=Event.PASSKEY_REMOVED,
            client=client,
            email=account.email,
            keep_session=principal.session_id,
        )
        await audit.record(
            conn,
            action=audit.PASSKEY_REMOVED,
            actor_id=account.user_id,
            target_user_id=account.user_id,
            ip=client.ip,
            after={"passkey_id": passkey_id, "sessions_revoked": len(revoked.session_ids)},
        )
    await events.publish(settings=settings, store=store, revoked=revoked)


async def login_options(*, db: Database, settings: Settings, email: str | None) -> Ceremony:
    """Options to sign in with a passkey. Without an email, for a discoverable credential
    (the authenticator offers the user's passkeys). With one, its passkeys are allowed; an
    unknown email, or one without passkeys, gets 1-3 decoy ids derived from it (stable,
    so asking twice tells nothing), after the same queries as a known one."""
    allow: list[PublicKeyCredentialDescriptor] = []
    user_id: str | None = None
    async with db.transaction() as conn:
        if email is not None:
            email = users.normalize_email(email)
            user_id, existing = await queries.credential_ids_by_email(conn=conn, email=email)
            allow = _descriptors(existing, transports=False) if existing else _decoys(settings, email)
        challenge_id, challenge = await new_challenge(conn, purpose=LOGIN, user_id=user_id, for_email=email is not None)
    options = generate_authentication_options(
        rp_id=settings.webauthn.rp_id,
        challenge=challenge,
        timeout=CHALLENGE_TTL_S * 1000,
        allow_credentials=allow,
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    return Ceremony(challenge_id=challenge_id, options=options_to_json_dict(options))


async def reauthenticate_options(*, db: Database, settings: Settings, principal: Principal) -> Ceremony:
    """Options for the caller to prove it is them again with one of their passkeys."""
    async with db.transaction() as conn:
        existing = await queries.credential_ids(conn=conn, user_id=principal.user_id)
        challenge_id, challenge = await new_challenge(conn, purpose=REAUTHENTICATE, user_id=principal.user_id)
    options = generate_authentication_options(
        rp_id=settings.webauthn.rp_id,
        challenge=challenge,
        timeout=CHALLENGE_TTL_S * 1000,
        allow_credentials=_descriptors(existing),
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    return Ceremony(challenge_id=challenge_id, options=options_to_json_dict(options))


@lru_cache(maxsize=4)
def _decoy_key(secret: str) -> bytes:
    return derive_key(secret.encode(), purpose=_DECOY_PURPOSE)


def _decoys(settings: Settings, email: str) -> list[PublicKeyCredentialDescriptor]:
    """1-3 credential ids that look like real ones, the same for one email every time (a
    keyed HMAC of it: nobody without the data key can tell them from real ids)."""
    key = _decoy_key(settings.data_key_secrets[0])
    seed = hmac.new(key, email.encode(), hashlib.sha256).digest()
    count = 1 + seed[0] % 3
    return [
        PublicKeyCredentialDescriptor(
            id=hmac.new(key, f"{index}:{email}".encode(), hashlib.sha256).digest()[:_DECOY_ID_BYTES]
        )
        for index in range(count)
    ]


async def _lock_for_registration(conn: BaseDBAsyncClient, *, settings: Settings, principal: Principal) -> Credentials:
    account = (await stepup.lock_caller(conn, settings=settings, principal=principal)).account
    if not account.email_verified:
        raise EmailNotVerified("Verify your email address before adding a passkey")
    return account
