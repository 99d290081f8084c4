"""The README as the package's long description, its relative links made absolute: on a
package index page `docs/operations.md` points nowhere. Everything else is in pyproject.toml."""

import re
import tomllib
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
BASE = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"].rstrip("/")


def absolute_links(markdown: str) -> str:
    """`[text](docs/x.md#y)` -> `[text](BASE/blob/main/docs/x.md#y)`; absolute links, anchors
    within the page and mail links are left alone."""
    return re.sub(r"\]\((?!https?://|#|mailto:)([^)\s]+)\)", lambda m: f"]({BASE}/blob/main/{m.group(1)})", markdown)


setup(
    long_description=absolute_links((ROOT / "README.md").read_text(encoding="utf-8")),
    long_description_content_type="text/markdown",
)
