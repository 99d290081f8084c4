"""SQL by domain: small keyword-only async functions `(*, conn, ...)`, the statements beside them."""
