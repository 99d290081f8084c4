"""The README's configuration table, generated from the settings' field descriptions:
`.venv/bin/python -m scripts.settings_table` prints it (tests/foundation/test_settings.py
fails while README.md's copy differs)."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from manas360.rate_policies import shipped_rate_table
from manas360.settings import Settings


def markdown_table() -> str:
    """The README's configuration table (variable | default | meaning), from the field descriptions."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    shipped = shipped_rate_table().get("policies", {})
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra  # _setting gives a dict or None
        shown = extra.get("shown_default") if isinstance(extra, dict) else None
        policy = shipped.get(name.removeprefix("rate_limit_")) if name.startswith("rate_limit_") else None
        if shown is None and policy is not None:
            shown = f"`{policy['limit']}/{policy['window_s']}` (policy table)"
        rows.append(f"| `{name.upper()}` | {shown or _shown_default(field.default)} | {field.description} |")
    return "\n".join(rows) + "\n"


def _shown_default(value: Any) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        return f"`{int(value)}`"
    return f"`{value}`" if value not in ("", ()) else "empty"


if __name__ == "__main__":
    print(markdown_table(), end="")
