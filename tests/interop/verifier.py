"""Another service's token check, as its developers would write it from docs/integration.md:
it knows only our JWKS URL, issuer and audience (no secret, no code of ours).

    python verifier.py JWKS_URL ISSUER AUDIENCE < tokens   (one token per line)

prints one line per token: `accepted <sub>` or `refused <reason>`.
"""

from __future__ import annotations

import sys

import jwt


def main() -> int:
    jwks_url, issuer, audience = sys.argv[1:4]
    keys = jwt.PyJWKClient(jwks_url, cache_keys=True)
    for line in sys.stdin:
        token = line.strip()
        try:
            key = keys.get_signing_key_from_jwt(token)
            # The algorithm comes from our published key, never from the token's header.
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm_name],
                issuer=issuer,
                audience=audience,
                options={"require": ["exp", "iat", "sub", "sid"]},
            )
            if jwt.get_unverified_header(token).get("typ") != "at+jwt":
                raise jwt.InvalidTokenError("not an access token")
        except (jwt.PyJWTError, jwt.PyJWKClientError) as exc:
            print(f"refused {type(exc).__name__}", flush=True)
        else:
            print(f"accepted {claims['sub']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
