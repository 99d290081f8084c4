from tortoise import BaseDBAsyncClient

RUN_IN_TRANSACTION = True


async def upgrade(db: BaseDBAsyncClient) -> str:
    return """
        CREATE TABLE IF NOT EXISTS "audit_logs" (
    "id" BIGSERIAL NOT NULL PRIMARY KEY,
    "actor_id" UUID,
    "target_user_id" UUID,
    "action" VARCHAR(64) NOT NULL,
    "before" JSONB,
    "after" JSONB,
    "ip" VARCHAR(64) NOT NULL,
    "request_id" VARCHAR(64) NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS "audit_logs_archive" (
    "id" BIGSERIAL NOT NULL PRIMARY KEY,
    "actor_id" UUID,
    "target_user_id" UUID,
    "action" VARCHAR(64) NOT NULL,
    "before" JSONB,
    "after" JSONB,
    "ip" VARCHAR(64) NOT NULL,
    "request_id" VARCHAR(64) NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL,
    "archived_at" TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE "audit_logs_archive" IS 'Audit rows older than the retention period, moved here by `maintenance archive-audit`.';
CREATE TABLE IF NOT EXISTS "features" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "name" VARCHAR(64) NOT NULL UNIQUE,
    "description" VARCHAR(255) NOT NULL
);
CREATE TABLE IF NOT EXISTS "permissions" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "name" VARCHAR(64) NOT NULL UNIQUE,
    "description" VARCHAR(255) NOT NULL
);
CREATE TABLE IF NOT EXISTS "rate_limit_logs" (
    "id" BIGSERIAL NOT NULL PRIMARY KEY,
    "policy" VARCHAR(32) NOT NULL,
    "key" VARCHAR(200) NOT NULL,
    "window_start" TIMESTAMPTZ NOT NULL,
    "blocked_count" INT NOT NULL,
    "first_blocked_at" TIMESTAMPTZ NOT NULL,
    "last_blocked_at" TIMESTAMPTZ NOT NULL,
    CONSTRAINT "uid_rate_limit__policy_031650" UNIQUE ("policy", "key", "window_start")
);
COMMENT ON TABLE "rate_limit_logs" IS 'Blocked requests, aggregated: one row per (policy, key, window), with a counter.';
CREATE TABLE IF NOT EXISTS "roles" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "name" VARCHAR(32) NOT NULL UNIQUE,
    "privilege_level" SMALLINT NOT NULL,
    "description" VARCHAR(255) NOT NULL
);
CREATE TABLE IF NOT EXISTS "role_permissions" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "permission_id" INT NOT NULL REFERENCES "permissions" ("id") ON DELETE CASCADE,
    "role_id" INT NOT NULL REFERENCES "roles" ("id") ON DELETE CASCADE,
    CONSTRAINT "uid_role_permis_role_id_6a25fe" UNIQUE ("role_id", "permission_id")
);
CREATE TABLE IF NOT EXISTS "subscription_plans" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "name" VARCHAR(32) NOT NULL UNIQUE,
    "display_name" VARCHAR(64) NOT NULL,
    "tier" SMALLINT NOT NULL UNIQUE,
    "price_cents" INT NOT NULL
);
CREATE TABLE IF NOT EXISTS "plan_features" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "feature_id" INT NOT NULL REFERENCES "features" ("id") ON DELETE CASCADE,
    "plan_id" INT NOT NULL REFERENCES "subscription_plans" ("id") ON DELETE CASCADE,
    CONSTRAINT "uid_plan_featur_plan_id_9e01d0" UNIQUE ("plan_id", "feature_id")
);
CREATE TABLE IF NOT EXISTS "user_accounts" (
    "id" UUID NOT NULL PRIMARY KEY,
    "email" VARCHAR(320) NOT NULL,
    "password_hash" VARCHAR(128) NOT NULL,
    "display_name" VARCHAR(100) NOT NULL,
    "status" VARCHAR(16) NOT NULL,
    "locked_until" TIMESTAMPTZ,
    "tokens_valid_after" TIMESTAMPTZ,
    "last_login_at" TIMESTAMPTZ,
    "created_at" TIMESTAMPTZ NOT NULL,
    "updated_at" TIMESTAMPTZ NOT NULL,
    "deleted_at" TIMESTAMPTZ,
    "role_id" INT NOT NULL REFERENCES "roles" ("id") ON DELETE RESTRICT
);
CREATE TABLE IF NOT EXISTS "login_attempts" (
    "id" BIGSERIAL NOT NULL PRIMARY KEY,
    "email" VARCHAR(320) NOT NULL,
    "success" BOOL NOT NULL,
    "reason" VARCHAR(32) NOT NULL,
    "ip" VARCHAR(64) NOT NULL,
    "user_agent" VARCHAR(512) NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL,
    "user_id" UUID REFERENCES "user_accounts" ("id") ON DELETE SET NULL
);
CREATE TABLE IF NOT EXISTS "revoked_access_tokens" (
    "jti" UUID NOT NULL PRIMARY KEY,
    "session_id" UUID,
    "reason" VARCHAR(32) NOT NULL,
    "revoked_at" TIMESTAMPTZ NOT NULL,
    "expires_at" TIMESTAMPTZ NOT NULL,
    "user_id" UUID NOT NULL REFERENCES "user_accounts" ("id") ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS "sessions" (
    "id" UUID NOT NULL PRIMARY KEY,
    "ip" VARCHAR(64) NOT NULL,
    "user_agent" VARCHAR(512) NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL,
    "last_used_at" TIMESTAMPTZ NOT NULL,
    "expires_at" TIMESTAMPTZ NOT NULL,
    "revoked_at" TIMESTAMPTZ,
    "revoke_reason" VARCHAR(32),
    "user_id" UUID NOT NULL REFERENCES "user_accounts" ("id") ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS "tokens" (
    "id" UUID NOT NULL PRIMARY KEY,
    "token_hash" VARCHAR(64) NOT NULL UNIQUE,
    "created_at" TIMESTAMPTZ NOT NULL,
    "expires_at" TIMESTAMPTZ NOT NULL,
    "rotated_at" TIMESTAMPTZ,
    "revoked_at" TIMESTAMPTZ,
    "parent_id" UUID REFERENCES "tokens" ("id") ON DELETE SET NULL,
    "session_id" UUID NOT NULL REFERENCES "sessions" ("id") ON DELETE CASCADE,
    "user_id" UUID NOT NULL REFERENCES "user_accounts" ("id") ON DELETE CASCADE
);
COMMENT ON TABLE "tokens" IS 'A refresh token, stored only as its SHA-256; rotation chains form a family per session.';
CREATE TABLE IF NOT EXISTS "user_subscriptions" (
    "id" UUID NOT NULL PRIMARY KEY,
    "status" VARCHAR(16) NOT NULL,
    "starts_at" TIMESTAMPTZ NOT NULL,
    "ends_at" TIMESTAMPTZ,
    "created_at" TIMESTAMPTZ NOT NULL,
    "plan_id" INT NOT NULL REFERENCES "subscription_plans" ("id") ON DELETE RESTRICT,
    "user_id" UUID NOT NULL REFERENCES "user_accounts" ("id") ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS "aerich" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "version" VARCHAR(255) NOT NULL,
    "app" VARCHAR(100) NOT NULL,
    "content" JSONB NOT NULL
);"""


async def downgrade(db: BaseDBAsyncClient) -> str:
    return """
        """


MODELS_STATE = (
    "eJztXe1zozYa/1c0fMrOeHcS57W9m5txstnbtE6yEzt3nXY6VAbZ1gUDBTnZTJv//SQZDA"
    "iBwTY2EH3Ji6QHxO8Rz7vEX9rMMZHlf+rNTUz6zkT7Efyl2XCG6B+pvg7QoOtGPayBwJHF"
    "B0M2SrecCW+GI5940CC0ZwwtH9EmE/mGh12CHZu22nPLYo2OQQdiexI1zW385xzpxJkgMk"
    "Ue7fjtd9qMbRN9R374r/ukjzGyzMSEscnuzdt18urytks8ubHJFz6W3XCkG441n9nRePeV"
    "TB17SYBtwlonyEYeJIjdgXhz9gRsgsHjhg+1mGw0ZDHLGI2JxnBukdgTj/SoTdP1u/uhPr"
    "ge6rpWAiPDsRm+dKo+B2DCpvDxh273+Pi8e3h8dnF6cn5+enF4Qcfy+aa7zt8Wk4nQWlyK"
    "Y3bz75u7IZuQQ5m44C9reOM0kMAFFWdGhD5lt+PpMh48Pt58lnMgTiPwYT7H5idGKXIjxD"
    "7GjgDsJTfCIRE7olW4A37kQHv1tfdwcHz2gT+w45OJxzs5RBzfCE8CPfoK6HMflUU1Tamw"
    "TWJL1x27bwrTqyn0MldqQCFgSSdXAMWUwNgzjNoMftctZE/IlP57dpID6396DxzZs5MPSZ"
    "FwF/R0eVcS4BEaOx5KA/zT4P5ODnBEIQBsYoOAv4GF/ZRgbvRyZVCwK898/08rjufBbe8X"
    "Eeqr/v2luK7ZBS7FhT0myCsD+5JAob4+6tgtI0oWo3cnRjStoULEQ/QhfSLVftnwJqkUzC"
    "thNjzEoNAhScP8mfYQPENyqJOUogQJSD+FfzRRTdIHNO9t6zWQcTnQD29urwfD3u23hHT5"
    "3Btes54ub30VWg/OBDYtLwL+ezP8Cti/4Nf7u2tRCC3HDX/V2JzgnDi67bzo0Iw5H2FriN"
    "ob85zGTzHrnTWMoPH0Aj1TT/U4XSdrbLpr1p2JLdCGE84zBi6bpuBR9jxjip+RluN0hkM6"
    "xXxPHcbGr/JBNX4T4DkvPnAsE3mATKFNfyDgIYJsNgy4yMOO2QEz5xmZgDqkCIxewR8ztk"
    "SQDW0DgeCeH/k0/vikCSurwtsoX1n5ypry55SvrHxl5StrymtTvnL9UVe+ciVCRPnKyleu"
    "rSCpk28cYpJyjhOqYeFrrcNngbSFjFZBkSqCIl+oeJh70mBI2NXJC4KMF4Nqln5/L/GE7t"
    "HJ+cnF8dnJMoywbMmLHqyOFPDfJTR6OH47uny/0Fasy+PTKoGwQNY6o6l7eloAaToqE2re"
    "91ZGsEZMcS1o63FZJoQoA/IvPz8gC2bwIBCb3+ilYqKzYVr2LVx3YWuobatUQn1ngu0eIW"
    "jmEpkmSvTnqiOLjaQ2EB9aM6Wk4ty7inOjGcRWGeG6JGhh5PC4e1hAsNJRmYKV9yWVmD83"
    "DOTLJKXjWIgKQCnMMSoB6BElayDSeSv3/r6fcD8ub4R1fPd4e3n9cHDEcaeDMEks73iQBf"
    "rljIWIonV2wnG30GrOWcziWlahQa0KO5fntqi+tyWxjGx4k1Stg/n0qMjypaMygeZ9Kjr4"
    "PoNGqferXNZZpZsT6eaUp5gEN43sF8dDeGL/jF45vjd0HqxGJtsXfKSX6RmGM09b8o0BNu"
    "UK0mYPviydnviqogjQ50YLQ4beH9w99vva235Cm9+QN8O+v3jqlE8Z6+3keZTuclzN3Mn3"
    "4kuqGGfzbD8V46xhjNOjnrkuiLP1w5wP9GpJGdow03Avkc54cFimlJKx4xytJMart6uXfu"
    "M34AskmM3vSlXtUVUFXJCa+5ngJolWg9yAd3Y7OAtpn1KgxigUogGiOX7UUoxs5kcN5qPl"
    "030LLtkwoIt6U7EFlvCmrnqDq97nay2xfseRrtgQ4fZlLEVgk+JQju1+HNUHCnYfzzKPwk"
    "j055oFjG26xYYWPxNDu7Qc4wmZIKjK9DsATiYemrAl8CNwbMQ2EbGtQuDAdSxsvHbAE6I/"
    "XijDnZcP7A8yBRDwMAfy0juRqriB3Gjh1Kyb0rNfiyvodPF7ZDMTRiVvd5W8jZhY1G2MKF"
    "qZvt12vit4N4qiGwxvIbTdwyKZcToq2x0/TGXGEyInBXN+OkakbWFCpiEJmELl2qOFXtOX"
    "8f2CPkSKbneexGGN3YiEYYs9n+ghUOUTmzL6Fr5NLU5vWnCjBSAhV/yvO/9rsifiAT07dN"
    "n0eLHakP4pTSBKRnVyfbPFeB1yAuq5UIo9phT/R3CZ0oFg+AZlA2v4Oto/x3Ob7+oG/E7s"
    "x8m/qsrVbLJvPdud8RFPkJSs1EhSqWINVRC5QwdxKalKa90kpVK4dVe4ca6j7y6mV1uD60"
    "nKFnK9IVwu5LTurWywQUxtWN1gTZFdu3Bw3+kYx5IWZ/D2fBOfjlBVgu0qvVBVgpXZma6H"
    "n7GFJoje5BlJNuwNZtCysksx0uRtKsk47p6fLRcz+ydvHQ9ue/1+Ooyq6jBVHWbdl3tmHa"
    "ZotW4IVDttqkqrVYW1lWETFd1JIVv32y5b9QIbLbqNqlzdq/kUMaJknaVI1ybVvrU0KX+l"
    "SuEao1CIrq5fDeXJhv586Do2DNyijnxsUa2uWXUT6mJDYFtp+YjwpmRhnaIlA5RpHIRduV"
    "ZBkOmqWdgkOxi6/Tjo+8iDqlM2NHXKhjplo5X5sRZnRXkdGX1d1q5Bi9EqzjeJ8yofvo6F"
    "UCcuF8qH16jYpTm1Wg3lsr5O4ZhAuJaxVDPOVp3YUzUmqsakJrGTDWpMYt/5WtZqr59+Wl"
    "aItwToShNPqf3+suiS5EyAnDBTbLTO9tjXLOCkEk2qTqeu6tzEPn1jXvWyEIt0LdxCvP2A"
    "HsEy7Z5fCRXSbCejVwcxsY3iJ9fDBtINZBOJ6s6rKotTqSRpVpK0iOGkPqtRpsgpbqNsod"
    "gpbiC1CbIqDc/M3Z4FNniW2NGp9YCHxvSdmAJO1QE+of6bCRzbegXQB5j4YPC197F7evYP"
    "4DmEsxsYU4qDD8aONwOQXnqG6Wh2bk6QRJV8BLy6+6iMaw3CBHkWMee4PoX+tIzRlqRqnX"
    "Wsvs2pskMqO6TyBkXzBkwlrpcdSlCq7FCtuaxygO+Ayy70qFdfMi+VIFLncAhfgdvv2SYN"
    "UnwlQFXJ0yqTpz7aVul5rLq5mcCuzJ0mX9TVlf0qMb3NxHRadW0B26JZ6Hqqq9U7JeLauv"
    "THqGI+/RRbpockYqKKlH9DwK408Bp/6SXhV0EmZAdhF5Xti5E1S/GrCOe2I5zqO89Vf+fZ"
    "hb7/4tCXu2wYOUXYQsSPuhcFEKejMhHnfU0vttjRpp6jQqe1H+Wc1n6UPq2d2ktkLsm1Zu"
    "McUewQYaq/8DPaEc5nRWAWAzkxlM9EkINTmKlGlknrFXtoBFoVYqtziG2RAtefoYVNHY6J"
    "zB/M57f8CorrdeY63+dmORNsr7tJLk6seF1nXqtsd7YabW+2e+6aa3I9Sam4XheuS172VD"
    "3iInq2DteTlEqi14fJshIHdYYUm4Q6Q6qWZ0g90AX+cHM1LBa4Dw1JgmaurOy/TPi+z67V"
    "W1yqsSIqv+I885s066Mm/yxOSxatrPphQ7zal0aWRAR2k0drJEBq00ctco8J3DISkCK2K7"
    "KQKc6qVGR7U5EqkbCDRAL/MO46NfcJwhYGIdrkjyLbXGtbRUSm4g115q+KIGfLz2bGEotE"
    "kPlO8HInwEcUKsokOftd1YmrQ7ZqErsrV8scnNW0afm95PinlsIbk4SlQ6NV+s095GFjqk"
    "m85aCnk+cjw2hMbfxidQrXhqdwPSNPvr0m2w+OkbSwRnRrnxqLi1D2UpVAOBjeQnQrqQml"
    "dyTS3TY/De7vMjyTiER0S7BBwN/Awn6DDQAZuAyMhO8RYnpw2/tFhPuqf38p2mDsApflDp"
    "bavjJ7+z+vabX9"
)
