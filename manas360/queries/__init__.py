"""Every hand-written SQL statement of the service, one module per domain.

Each module keeps its domain's statements as named constants beside small keyword-only
async functions named by intent (`lock_user_row(*, conn, user_id)`), each running one
statement on the connection or transaction it is given and returning typed values (a row
is a NamedTuple or frozen dataclass named in its module, never a dict). The
services decide which transaction to open, in which order to lock and what the rows mean;
this package only says how to ask PostgreSQL. Migrations keep their own SQL (migrations/).
"""
