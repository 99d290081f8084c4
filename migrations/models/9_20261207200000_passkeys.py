"""Passkeys (WebAuthn): the credentials and the ceremonies' challenges.

- `webauthn_credentials`: one row per passkey: the credential id the authenticator chose
  (unique across accounts), its COSE public key, the last signature counter it reported, what
  it said of itself at registration (transports, AAGUID, backup eligibility and state, whether
  it verified the user) and the owner's name for it. Removed with the account (cascade).
- `webauthn_challenges`: a ceremony in flight: the random challenge, its purpose (`register`,
  `login`, `reauthenticate`), the user it is bound to (none for a discoverable login, nor for
  a login asked for an unknown address: `for_email` says it was asked for one, so only that
  account's passkey may answer it, and for an unknown address none), the handle a client sends back (`challenge_id`, stored only as its SHA-256) and, for a
  registration, the name asked for. Single use, expiring by the database's clock, and dead once
  the account's credential epoch moves past its creation, like every one-time token.
Rows are read and written in SQL (manas360.queries.auth.passkeys); the models snapshot below
is migration 3's."""

from tortoise import BaseDBAsyncClient

RUN_IN_TRANSACTION = True


async def upgrade(db: BaseDBAsyncClient) -> str:
    return """
        CREATE TABLE IF NOT EXISTS "webauthn_credentials" (
            "id" UUID NOT NULL PRIMARY KEY,
            "user_id" UUID NOT NULL REFERENCES "user_accounts" ("id") ON DELETE CASCADE,
            "credential_id" BYTEA NOT NULL,
            "public_key" BYTEA NOT NULL,
            "sign_count" BIGINT NOT NULL DEFAULT 0,
            "transports" VARCHAR(16)[] NOT NULL DEFAULT '{}',
            "aaguid" UUID,
            "backup_eligible" BOOLEAN NOT NULL DEFAULT FALSE,
            "backed_up" BOOLEAN NOT NULL DEFAULT FALSE,
            "user_verified_at_registration" BOOLEAN NOT NULL DEFAULT FALSE,
            "name" VARCHAR(64) NOT NULL,
            "created_at" TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
            "last_used_at" TIMESTAMPTZ,
            CONSTRAINT "uq_webauthn_credentials_credential_id" UNIQUE ("credential_id")
        );
        CREATE INDEX IF NOT EXISTS "idx_webauthn_credentials_user" ON "webauthn_credentials" ("user_id");
        COMMENT ON TABLE "webauthn_credentials" IS 'Passkeys: WebAuthn public-key credentials of each account';
        CREATE TABLE IF NOT EXISTS "webauthn_challenges" (
            "id" BIGSERIAL NOT NULL PRIMARY KEY,
            "handle_hash" BYTEA NOT NULL,
            "purpose" VARCHAR(16) NOT NULL,
            "user_id" UUID REFERENCES "user_accounts" ("id") ON DELETE CASCADE,
            "challenge" BYTEA NOT NULL,
            "name" VARCHAR(64),
            "for_email" BOOLEAN NOT NULL DEFAULT FALSE,
            "created_at" TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
            "expires_at" TIMESTAMPTZ NOT NULL,
            "used_at" TIMESTAMPTZ,
            CONSTRAINT "uq_webauthn_challenges_handle" UNIQUE ("handle_hash"),
            CONSTRAINT "ck_webauthn_challenges_purpose" CHECK ("purpose" IN ('register', 'login', 'reauthenticate'))
        );
        CREATE INDEX IF NOT EXISTS "idx_webauthn_challenges_user" ON "webauthn_challenges" ("user_id");
        CREATE INDEX IF NOT EXISTS "idx_webauthn_challenges_expires" ON "webauthn_challenges" ("expires_at");
        COMMENT ON TABLE "webauthn_challenges" IS 'Passkey ceremonies in flight: single-use challenges';"""


async def downgrade(db: BaseDBAsyncClient) -> str:
    return """
        DROP TABLE IF EXISTS "webauthn_challenges";
        DROP TABLE IF EXISTS "webauthn_credentials";"""


MODELS_STATE = (
    "eJztXVtzozgW/isUT+kqd1fiJE5mdmur7HR62zNO3BU7u1MzNcXIINvaYGBATjo1k/++kg"
    "wGhMBgGxuIXnKRzuHyHeno3CT+Uhe2AU3vU3dpIDywZ+qPyl+qBRaQ/JHoaykqcJywhzZg"
    "MDEZMaBUmmnPWDOYeNgFOiY9U2B6kDQZ0NNd5GBkW6TVWpombbR1QoisWdi0tNCfS6hhew"
    "bxHLqk47ffSTOyDPgdesG/zpM2RdA0Yg+MDHpv1q7hV4e19dCsb+EvjJbecKLptrlcWCG9"
    "84rntrVmQBamrTNoQRdgSO+A3SV9A/qA/usGL7V62JBk9ZQRHgNOwdLEkTeeaGGbqmn3w7"
    "E2uh1rmloAI922KL7kUT0GwIw+wscf2u3z86v26Xnn+vLi6ury+vSa0LLnTXZdva0eJkRr"
    "dSmGWf/f/fsxfSCbCHElX9rwxngABisuJowQfSJu29VEMnh87H8WSyDKw8lhuUTGJ8rJSy"
    "PAPiIOH+y1NAKSUBzhKDyAPDKgvfnafTg573xgL2x7eOayTgYRwzfEEwOXTAFt6cGiqCY5"
    "JbZxbMm4o/dNYHozB27qSPU5OCzJw+VAMaEwjgyjugDfNRNaMzwn/3YuMmD9T/eBIdu5+B"
    "BXCfd+T5t1xQGewKntwiTAP42G92KAQw4OYAPpWPlbMZGXUMy1Hq4UCnrlhef9aUbxPLnr"
    "/sJDfTMY9vhxTS/Q4wf2FEO3COxrBon69qgjp4gqWVEfTo2oak2ViAvJS3pYuPqlwxvnkj"
    "BvhFl3IYVCAzgJ82fSg9ECiqGOc/IaxGf9FPxRx2WSvKAxtMxXX8dlQD/u392Oxt27bzHt"
    "8rk7vqU9bdb6yrWedDgxrS+i/Lc//qrQf5Vfh/e3vBJa041/VekzgSW2Nct+0YARcT6C1g"
    "C1N+o5TZ8i1jttmAD96QW4hpbosdt2Gm2ya9Fe8C3AAjMmMwoufUzOo+y6+hw9QzXD6QxI"
    "Wvl8Tw1E6Df5oCq7ieLaL55imwZ0FTwHFvkBFRdiaFEyxYEuso2WsrCfoaEQhxQqk1fljw"
    "UdItAClg4V/54f2WP88UnlRlaJt5G+svSVVenPSV9Z+srSV1al1yZ95eqjLn3lUpSI9JWl"
    "r1xZRVIl3zjAJOEcx5aGla+1jZw51gYKWgZFygiKfCHqYekKgyFBVysrCDJdEVUs/f5e4g"
    "nts4uri+vzzsU6jLBuyYoebI4UsN8FVvSAfj9r+XGhLXktjz5WAYQ5tsYZTe3LyxxIE6pU"
    "qFnfWxHFGgrFMYGlRXUZF6L02b/8/ABNkCIDX21+I5eKqM6arbJvwbgLWoPVtsxFaGDPkN"
    "XFGC4cLFqJYv2Zy5FJKYkNxEgrtijJOPeh4txwAZBZRLmuGRoYOTxvn+ZQrIQqVbGyvvgi"
    "5i11HXoiTWnbJiQKUAhzhIsDekLYaoh01sgdDgcx96PX58bx/eNd7/bh5IzhTogQjg3vaJ"
    "AFeMWMhZCjcXbCeTvXaM4YzPxYlqFBtQw7l+W2yHpvCWIZ6fDGuRoH8+VZnuFLqFKBZn0y"
    "Ovg+g0aJ+VUs6yzTzbF0c8JTjIObRPaL7UI0s36GrwzfPnkOWiOT7gs+kst0dd1eJi352g"
    "CbcAVJswte1k5PdFQRBMh7w5UhQ+6v3D8OBurbcUKb36C7QJ63euuETxnpbWV5lM6armLu"
    "5HvxJWWMs362n4xxVjDG6RLPXOPU2fZhzgdytbgOrZlpeJRIZzQ4LFqU4rHjjFWJj1fvd1"
    "36jd2ADRD/aX6XS9URlypfCkJzPxXcONNmkGswZ/eDM5f2KQRqhEMi6iOa4Uet1chuftRo"
    "OVm/3Tf/kjUDOq83FRlgMW/qpju66X6+VWPjdxquFTsi3LyMJQ9sXB2KsT2Oo/pAwB6gRe"
    "pRGLH+TLOAik0zKWn+MzHUnmnrT9BQ/KpMr6WA2cyFMzoEflRsC9JNRHSrkHLi2CbSX1vK"
    "EyQ/XojA7ZcP9A88V4DCwhzQTe5EKuMGYqOFcdNuwk9/ra6gkcHv4t1MGJm8PVTyNhRiXr"
    "cx5Ghk+nbf+S5/buRF1ydvILTt0zyZcUKV7o6fJjLjMZWTgDk7HcPzNjAhU5METK5y7clq"
    "XdPW8f2cPkSC73CexGmF3YiYYYtcD2sBUMUTmyL+Bs6mBqc3TbDTABCwS/lXXf4V2RPxAJ"
    "9tMmy6rFhtTP4UJhAFVK1M32xFrwHGQDwXwnHElOL/MCpSOuCT71A2sIWvo/5zurTYrm6F"
    "3Yn+uPhXWbmaXfatp7szHmQJkoKVGnEuWawhCyIP6CCuNVXhVTfOKRfcqi+4UanD7w4iV9"
    "tC6nHOBkq9JlLO5bQerWywRkKtWd1gRZHdunDw2OkY2xQWZ7D2bBOfUMgqwWaVXsgqwdLs"
    "TMdFz8iEM0hu8gwFG/ZGC2Ca6aUYSfYmlWSct68668FM/8kax6O77mCQDKPKOkxZh1n14Z"
    "5ah8lbrTsC1UybqtRqVW5spdhEeXdSiMb9vstWXd9GC28jK1ePaj6FgihYZ8nzNWlp31ua"
    "lE2pQrhGOCSim+tXA32yoz8fuI41AzevIx8ZVJtrVp3YcrEjsI20fHh4E7qwStGSEUw1Do"
    "KuTKvAz3RVLGySHgzdfxz0feRB5SkbqjxlQ56y0cj8WIOzoqyOjEyXrWvQIrxS8nWSvMyH"
    "b2MhVEnKufLhFSp2qU+tVk2lrG1TOMYxbmUsVUyyZSf2ZI2JrDGpSOxkhxqTyHe+1rXa26"
    "ef1hXiDQG61MRTYr+/KLokOBMgI8wUodboHvuKBZxkoknW6VR1OTeQR2bMq1YUYp6vgVuI"
    "9x/Qw0i0umdXQgU8+8noVUFN7KP4yXGRDjUdWliwdGdVlUW5ZJI0LUmax3CSn9UoUuQUtV"
    "H2UOwUNZCaBFmZhmfqbs8cGzwL7OhUu4oLp2ROzBXG1VI8TPw3Q7Et81UBnoKwp4y+dj+2"
    "Lzv/UFwbM3Er+pzg4ClT210ogFx6gQg1PTfHT6IKPgJe3n1kxrUCYYIsi5hJXJsDb17EaI"
    "tzNc46lt/mlNkhmR2SeYO8eQO6JG6XHYpxyuxQpaUsc4DvQMoOcIlXXzAvFWOS53BwX4E7"
    "7tkmNVr4CoAqk6dlJk89uK/S80h1cz2B3Zg7jU/UzZX9MjG9z8R0cunaA7Z5s9DVXK4275"
    "SIrtaFP0YV8ennyDRcKFATZaT8awJ2qYHX6KQXhF85nZAehF1Vtq8oK5bilxHOfUc45Xee"
    "y/7OswM878Umk7toGDnB2EDEz9rXORAnVKmIs766F1scaFPPWa7T2s8yTms/S57WTuwlvB"
    "TkWtNxDjkOiDBZv9AzPBDOnTww84GcCModHmSmdbVn6CJyyW2ibMILyGBblYNtiynQoEVx"
    "Fn1MxbZNCCyxsDlOTswTwlrWNFu3HFa2veFwEBNrr899NOX+8a53SyYdkychQiufJlny5J"
    "93TmxfkV20YbcaxyvnV5Xn16rYRHsGJiIKcYpFkZdseYuvIKVeZamzHaWmPUPWtttRo8xS"
    "1lWWtawrSTdYm1tXsnSMLaUe55RSr4rUBZM9Ufm7ilNvI/U4p9To1RGyqJhIntZGH0Ke1n"
    "bUJFnaaW0PZIA/9G/G+VJkgSGJ4cIRbbApkigb0Gt1V5eqrYrK3tuR+vWn7VETf4CqIYNW"
    "VGe0I17NK9gQRAR2g6jZo0hur6pClj+GW0qqn8d2Q74/IVmZ9G9u0l+m7A6QsmOfoN5md0"
    "uMsYFBiCb5o9AyttrAFLLJeEOV5SsjyOn6s56xxDwRZHbmQrFvLYQcMsokyKrLHRnyOLuK"
    "xO6K7RrwT0XbdaOL4KC1hsIb0YSFQ6Nl+s1d6CJ9rgq8Zb+nleUjg5CmMn6xPO9ux/Punq"
    "Er3siW7gdHWBpYjb23j/pFVSidVAUQ9skbiG4p1dfkjli4r+2n0fA+xTMJWXi3BOlY+Vsx"
    "kVdjA0AELgUj5nsEmJ7cdX/h4b4ZDHu8DUYv0Ct2hNv+F7O3/wN4Rc1Q"
)
