"""Edge protection: rate limits, the client's address, request-shape limits, CORS settings
and slow-client deadlines. `install_edge(app, settings)` wires it into an app; docs/edge.md
explains every rule.

For blueprints: `request_client_ip(request)` (the client's address behind trusted proxies)
and `@rate_limited("<policy>")` (put a route under a policy of config/ratelimits.toml).
For the authentication guard: `user_rate_key` and `apply_verdict`.
"""

from manas360.edge.blocklog import flush_block_log
from manas360.edge.client import request_client_ip, request_rate_address
from manas360.edge.install import install_edge
from manas360.edge.ratelimit import apply_verdict, rate_limited, user_rate_key

__all__ = [
    "apply_verdict",
    "flush_block_log",
    "install_edge",
    "rate_limited",
    "request_client_ip",
    "request_rate_address",
    "user_rate_key",
]
