"""SQL by domain: each module holds the statements of one domain as constants beside small
keyword-only async functions `(*, conn, ...)` that run them; services call those."""
