"""Every hand-written SQL statement of the service, one module per domain.

Each module keeps its domain's statements as named constants beside small keyword-only
async functions named by intent (`lock_user_row(*, conn, user_id)`), each running one
statement on the connection or transaction it is given and returning plain values. The
services decide which transaction to open, in which order to lock and what the rows mean;
this package only says how to ask PostgreSQL. Migrations keep their own SQL (migrations/).
"""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]
"""One result row, column name to value (as Tortoise and asyncpg decode it)."""
