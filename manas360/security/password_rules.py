"""Which new passwords are refused (register, change, reset), beyond their length: NIST SP
800-63B-3 5.1.1.2 (no composition rules; refuse values known to be common or specific to the
context).

- the common passwords of zxcvbn's frequency lists (the 30,000 most frequent passwords of
  leaked corpora, as the `zxcvbn` package ships them; compared case-insensitively);
- anything containing the service's name (`manas360manas360`);
- anything containing the local part of the account's email when that is 4 characters or
  longer (case-insensitive).

Only new passwords are checked: an existing password keeps working until it is changed."""

from __future__ import annotations

from functools import lru_cache

SERVICE_WORDS = ("manas360",)
MIN_LOCAL_PART_CHARS = 4

COMMON = "is one of the most common passwords; choose another"
SERVICE = "contains the name of this service; choose another"
EMAIL = "contains your email address's name; choose another"


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS  # type: ignore[import-untyped]

    return frozenset(word.lower() for word in FREQUENCY_LISTS["passwords"])


def password_problem(password: str, *, email: str) -> str | None:
    """Why `password` may not be the new password of the account at `email`, or None."""
    folded = password.casefold()
    if folded in common_passwords():
        return COMMON
    if any(word in folded for word in SERVICE_WORDS):
        return SERVICE
    local = email.rsplit("@", 1)[0].casefold()
    if len(local) >= MIN_LOCAL_PART_CHARS and local in folded:
        return EMAIL
    return None
