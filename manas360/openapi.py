"""`python -m manas360.openapi > docs/openapi.json`: the OpenAPI document of the app as
`create_app` builds it (the builder is manas360.http.openapi)."""

from __future__ import annotations

import sys

from manas360.http.openapi import build_document, render


def main(argv: list[str] | None = None) -> int:
    """Print the document of the app as `create_app` builds it (no connection is made)."""
    from manas360.app import create_app
    from manas360.settings import load_settings

    app = create_app(load_settings({"ENV": "test"}), name="manas360_openapi")
    sys.stdout.buffer.write(render(build_document(app)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
