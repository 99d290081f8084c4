"""SMTP_URL, parsed once, and the transports the outbox sender delivers through.

Accepted forms: `smtp://[user:pass@]host[:port]` (plain text, port 25),
`smtp+starttls://…` (upgraded with STARTTLS, port 587) and `smtps://…` (TLS from the first
byte, port 465). User and password may be percent-encoded. The query may carry
`ssl_ca_certs=<path>` (a CA bundle to verify the server with, instead of the system's) and
`timeout=<seconds>` (each SMTP step; default 30); anything else is refused. Certificates
and host names are always verified on the TLS forms.

Two transports: `SmtpTransport` (aiosmtplib) and `ConsoleTransport`, the development
backend that prints each mail in full to the log (the only place a token may be logged).
"""

from __future__ import annotations

import email.utils
import os
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
from loguru import logger

Security = Literal["plain", "starttls", "tls"]
_SCHEMES: dict[str, tuple[Security, int]] = {
    "smtp": ("plain", 25),
    "smtp+starttls": ("starttls", 587),
    "smtps": ("tls", 465),
}
QUERY_PARAMETERS = ("ssl_ca_certs", "timeout")
DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    security: Security
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __repr__(self) -> str:  # never the password
        return (
            f"SmtpConfig(host={self.host!r}, port={self.port}, security={self.security!r}, "
            f"username={self.username!r}, ca_file={self.ca_file!r}, timeout_s={self.timeout_s})"
        )


def parse_smtp_url(url: str) -> SmtpConfig:
    """The SMTP server an URL names; ValueError (never quoting the URL: it holds the password)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError("must start with smtp://, smtp+starttls:// or smtps://")
    security, default_port = _SCHEMES[scheme]
    try:
        host, port = parts.hostname, parts.port or default_port
    except ValueError:
        raise ValueError("has an invalid port") from None
    if not host:
        raise ValueError("has no host (percent-encode '@', ':' and '/' in the user name and password)")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError("must not have a path or fragment")
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    unknown = sorted(set(query) - set(QUERY_PARAMETERS))
    if unknown:
        raise ValueError(f"has unknown parameters: {', '.join(unknown)} (known: {', '.join(QUERY_PARAMETERS)})")
    ca_file = query.get("ssl_ca_certs", [None])[-1]
    if ca_file is not None and not os.path.isfile(ca_file):
        raise ValueError("ssl_ca_certs names no readable file")
    if ca_file is not None and security == "plain":
        raise ValueError("ssl_ca_certs needs smtp+starttls:// or smtps://")
    timeout_s = DEFAULT_TIMEOUT_S
    if "timeout" in query:
        try:
            timeout_s = float(query["timeout"][-1])
        except ValueError:
            raise ValueError("timeout must be a number of seconds") from None
        if not 0 < timeout_s <= 600:
            raise ValueError("timeout must be in (0, 600] seconds")
    return SmtpConfig(
        host=host,
        port=port,
        security=security,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        ca_file=ca_file,
        timeout_s=timeout_s,
    )


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """One outbox row to deliver."""

    id: int
    recipient: str
    subject: str
    body: str
    kind: str


def build_message(mail: OutgoingMail, *, mail_from: str) -> EmailMessage:
    """The RFC 5322 message; its Message-ID names the outbox row, so a copy delivered twice
    (a sender that died between the server's OK and recording it) can be recognised."""
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = mail.recipient
    message["Subject"] = mail.subject
    message["Date"] = email.utils.formatdate(usegmt=True)
    domain = mail_from.rpartition("@")[2].strip(" >") or "localhost"
    message["Message-ID"] = f"<outbox-{mail.id}@{domain}>"
    message.set_content(mail.body)
    return message


class MailTransport(Protocol):
    name: str

    async def send(self, mail: OutgoingMail) -> None:
        """Deliver or raise (any exception is a failed attempt, retried later)."""


class SmtpTransport:
    """Delivery over SMTP with aiosmtplib: one connection per message (mail here is rare and
    small; a connection kept open would only need its own failure handling)."""

    name = "smtp"

    def __init__(self, config: SmtpConfig, *, mail_from: str) -> None:
        self.config = config
        self.mail_from = mail_from

    async def send(self, mail: OutgoingMail) -> None:
        config = self.config
        await aiosmtplib.send(
            build_message(mail, mail_from=self.mail_from),
            hostname=config.host,
            port=config.port,
            username=config.username,
            password=config.password,
            use_tls=config.security == "tls",
            # Plain smtp:// means plain: no opportunistic upgrade that fails on a relay's odd certificate.
            start_tls=config.security == "starttls",
            cert_bundle=config.ca_file,
            timeout=config.timeout_s,
        )


class ConsoleTransport:
    """Development only (ENV=development without SMTP_URL): each mail printed to the log in
    full, link and token included, so a developer can follow it without a mail server."""

    name = "console"

    def __init__(self, *, mail_from: str) -> None:
        self.mail_from = mail_from

    async def send(self, mail: OutgoingMail) -> None:
        message = build_message(mail, mail_from=self.mail_from)
        headers = "".join(f"{name}: {value}\n" for name, value in message.items() if not name.startswith("Content"))
        # The body as written, not transfer-encoded: the link stays one line to click or copy.
        logger.info("mail (console backend, not sent)\n{}\n{}", headers, mail.body)
