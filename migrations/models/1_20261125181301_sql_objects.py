"""Hand-written SQL for what the ORM cannot express: expression/partial indexes, column
defaults for raw SQL, materialized views and maintenance functions."""

from tortoise import BaseDBAsyncClient

RUN_IN_TRANSACTION = True


async def upgrade(db: BaseDBAsyncClient) -> str:
    return """
        -- Column defaults, so raw SQL (COPY seeding, maintenance) needs no ORM.
        ALTER TABLE "roles" ALTER COLUMN "description" SET DEFAULT '';
        ALTER TABLE "permissions" ALTER COLUMN "description" SET DEFAULT '';
        ALTER TABLE "features" ALTER COLUMN "description" SET DEFAULT '';
        ALTER TABLE "user_accounts"
            ALTER COLUMN "display_name" SET DEFAULT '',
            ALTER COLUMN "status" SET DEFAULT 'active',
            ALTER COLUMN "created_at" SET DEFAULT now(),
            ALTER COLUMN "updated_at" SET DEFAULT now(),
            ADD CONSTRAINT "ck_user_accounts_status" CHECK ("status" IN ('active', 'suspended')),
            ADD CONSTRAINT "ck_user_accounts_email_lower" CHECK ("email" = LOWER(TRIM("email")));
        ALTER TABLE "roles" ADD CONSTRAINT "ck_roles_privilege" CHECK ("privilege_level" BETWEEN 0 AND 100);
        ALTER TABLE "subscription_plans" ADD CONSTRAINT "ck_plans_price" CHECK ("price_cents" >= 0);
        ALTER TABLE "user_subscriptions"
            ALTER COLUMN "status" SET DEFAULT 'active',
            ALTER COLUMN "starts_at" SET DEFAULT now(),
            ALTER COLUMN "created_at" SET DEFAULT now(),
            ADD CONSTRAINT "ck_user_subscriptions_status" CHECK ("status" IN ('active', 'cancelled', 'expired'));
        ALTER TABLE "sessions"
            ALTER COLUMN "ip" SET DEFAULT '',
            ALTER COLUMN "user_agent" SET DEFAULT '',
            ALTER COLUMN "created_at" SET DEFAULT now(),
            ALTER COLUMN "last_used_at" SET DEFAULT now();
        ALTER TABLE "tokens" ALTER COLUMN "created_at" SET DEFAULT now();
        ALTER TABLE "revoked_access_tokens"
            ALTER COLUMN "reason" SET DEFAULT '',
            ALTER COLUMN "revoked_at" SET DEFAULT now();
        ALTER TABLE "login_attempts"
            ALTER COLUMN "reason" SET DEFAULT '',
            ALTER COLUMN "ip" SET DEFAULT '',
            ALTER COLUMN "user_agent" SET DEFAULT '',
            ALTER COLUMN "created_at" SET DEFAULT now();
        ALTER TABLE "rate_limit_logs"
            ALTER COLUMN "blocked_count" SET DEFAULT 0,
            ALTER COLUMN "first_blocked_at" SET DEFAULT now(),
            ALTER COLUMN "last_blocked_at" SET DEFAULT now();
        ALTER TABLE "audit_logs"
            ALTER COLUMN "ip" SET DEFAULT '',
            ALTER COLUMN "request_id" SET DEFAULT '',
            ALTER COLUMN "created_at" SET DEFAULT now();
        ALTER TABLE "audit_logs_archive"
            ALTER COLUMN "ip" SET DEFAULT '',
            ALTER COLUMN "request_id" SET DEFAULT '',
            ALTER COLUMN "archived_at" SET DEFAULT now();

        -- One live account per email, compared case-insensitively; a soft-deleted account
        -- frees its address. Tortoise cannot express expression or partial indexes.
        CREATE UNIQUE INDEX "uq_user_accounts_email_live" ON "user_accounts" (LOWER("email")) WHERE "deleted_at" IS NULL;
        CREATE INDEX "idx_user_accounts_created" ON "user_accounts" ("created_at", "id");

        -- Hot indexes.
        CREATE INDEX "idx_sessions_user" ON "sessions" ("user_id", "created_at" DESC);
        CREATE INDEX "idx_tokens_hash_live" ON "tokens" ("token_hash") WHERE "revoked_at" IS NULL;
        CREATE INDEX "idx_tokens_session" ON "tokens" ("session_id");
        CREATE INDEX "idx_tokens_expires" ON "tokens" ("expires_at");
        CREATE INDEX "idx_revoked_access_user" ON "revoked_access_tokens" ("user_id", "expires_at");
        CREATE INDEX "idx_audit_logs_user_time" ON "audit_logs" ("target_user_id", "created_at" DESC);
        CREATE INDEX "idx_audit_logs_time" ON "audit_logs" ("created_at");
        CREATE INDEX "idx_role_permissions_role" ON "role_permissions" ("role_id");
        CREATE INDEX "idx_plan_features_plan" ON "plan_features" ("plan_id");
        CREATE INDEX "idx_login_attempts_email_time" ON "login_attempts" ("email", "created_at" DESC);
        CREATE INDEX "idx_login_attempts_time" ON "login_attempts" ("created_at");
        CREATE INDEX "idx_user_subscriptions_user" ON "user_subscriptions" ("user_id", "starts_at" DESC);

        -- Read models for reporting and the admin listing; refreshed by
        -- refresh_materialized_views() (CONCURRENTLY needs each unique index below).
        CREATE MATERIALIZED VIEW "mv_users_with_subscription" AS
            SELECT u."id" AS "user_id", u."email", u."display_name", u."status", u."locked_until",
                   u."created_at", r."name" AS "role", r."privilege_level",
                   COALESCE(p."name", 'free') AS "plan", COALESCE(p."tier", 0) AS "plan_tier",
                   s."status" AS "subscription_status", s."ends_at" AS "subscription_ends_at"
            FROM "user_accounts" u
            JOIN "roles" r ON r."id" = u."role_id"
            LEFT JOIN LATERAL (
                SELECT us."plan_id", us."status", us."ends_at" FROM "user_subscriptions" us
                WHERE us."user_id" = u."id" AND us."status" = 'active'
                  AND us."starts_at" <= now() AND (us."ends_at" IS NULL OR us."ends_at" > now())
                ORDER BY us."starts_at" DESC LIMIT 1
            ) s ON TRUE
            LEFT JOIN "subscription_plans" p ON p."id" = s."plan_id"
            WHERE u."deleted_at" IS NULL
            WITH DATA;
        CREATE UNIQUE INDEX "uq_mv_users_with_subscription" ON "mv_users_with_subscription" ("user_id");
        CREATE INDEX "idx_mv_users_with_subscription_created" ON "mv_users_with_subscription" ("created_at", "user_id");

        CREATE MATERIALIZED VIEW "mv_user_permissions" AS
            SELECT u."id" AS "user_id", pm."name" AS "permission"
            FROM "user_accounts" u
            JOIN "role_permissions" rp ON rp."role_id" = u."role_id"
            JOIN "permissions" pm ON pm."id" = rp."permission_id"
            WHERE u."deleted_at" IS NULL
            WITH DATA;
        CREATE UNIQUE INDEX "uq_mv_user_permissions" ON "mv_user_permissions" ("user_id", "permission");

        CREATE MATERIALIZED VIEW "mv_user_features" AS
            SELECT m."user_id", f."name" AS "feature"
            FROM "mv_users_with_subscription" m
            JOIN "subscription_plans" p ON p."name" = m."plan"
            JOIN "plan_features" pf ON pf."plan_id" = p."id"
            JOIN "features" f ON f."id" = pf."feature_id"
            WITH DATA;
        CREATE UNIQUE INDEX "uq_mv_user_features" ON "mv_user_features" ("user_id", "feature");

        CREATE OR REPLACE FUNCTION refresh_materialized_views() RETURNS void
        LANGUAGE plpgsql AS $$
        BEGIN
            -- Order matters: mv_user_features reads mv_users_with_subscription.
            REFRESH MATERIALIZED VIEW CONCURRENTLY "mv_users_with_subscription";
            REFRESH MATERIALIZED VIEW CONCURRENTLY "mv_user_permissions";
            REFRESH MATERIALIZED VIEW CONCURRENTLY "mv_user_features";
        END;
        $$;

        CREATE OR REPLACE FUNCTION cleanup_expired_tokens()
        RETURNS TABLE (refresh_tokens bigint, sessions bigint, revoked_access_tokens bigint)
        LANGUAGE plpgsql AS $$
        DECLARE
            n_tokens bigint; n_sessions bigint; n_jtis bigint;
        BEGIN
            DELETE FROM "tokens" t WHERE t."expires_at" < now();
            GET DIAGNOSTICS n_tokens = ROW_COUNT;
            DELETE FROM "sessions" s WHERE s."expires_at" < now()
                AND NOT EXISTS (SELECT 1 FROM "tokens" t WHERE t."session_id" = s."id");
            GET DIAGNOSTICS n_sessions = ROW_COUNT;
            -- An access-token denylist row is useless once the token itself has expired.
            DELETE FROM "revoked_access_tokens" r WHERE r."expires_at" < now();
            GET DIAGNOSTICS n_jtis = ROW_COUNT;
            RETURN QUERY SELECT n_tokens, n_sessions, n_jtis;
        END;
        $$;

        -- Moves audit rows older than `days` into audit_logs_archive; at most `batch_size`
        -- rows per call (NULL: all), so callers can loop in short transactions.
        CREATE OR REPLACE FUNCTION cleanup_old_audit_logs(days integer, batch_size integer DEFAULT NULL)
        RETURNS bigint
        LANGUAGE plpgsql AS $$
        DECLARE
            moved bigint;
        BEGIN
            IF days IS NULL OR days < 0 THEN
                RAISE EXCEPTION 'days must be >= 0';
            END IF;
            WITH doomed AS (
                SELECT a."id" FROM "audit_logs" a
                WHERE a."created_at" < now() - make_interval(days => days)
                ORDER BY a."id"
                LIMIT batch_size
                FOR UPDATE SKIP LOCKED
            ), gone AS (
                DELETE FROM "audit_logs" a USING doomed d WHERE a."id" = d."id"
                RETURNING a.*
            )
            INSERT INTO "audit_logs_archive"
                ("id", "actor_id", "target_user_id", "action", "before", "after", "ip", "request_id", "created_at")
            SELECT g."id", g."actor_id", g."target_user_id", g."action", g."before", g."after", g."ip",
                   g."request_id", g."created_at"
            FROM gone g
            ON CONFLICT ("id") DO NOTHING;
            GET DIAGNOSTICS moved = ROW_COUNT;
            RETURN moved;
        END;
        $$;
        """


async def downgrade(db: BaseDBAsyncClient) -> str:
    return """
        DROP FUNCTION IF EXISTS cleanup_old_audit_logs(integer, integer);
        DROP FUNCTION IF EXISTS cleanup_expired_tokens();
        DROP FUNCTION IF EXISTS refresh_materialized_views();
        DROP MATERIALIZED VIEW IF EXISTS "mv_user_features";
        DROP MATERIALIZED VIEW IF EXISTS "mv_user_permissions";
        DROP MATERIALIZED VIEW IF EXISTS "mv_users_with_subscription";
        DROP INDEX IF EXISTS "idx_user_subscriptions_user";
        DROP INDEX IF EXISTS "idx_login_attempts_time";
        DROP INDEX IF EXISTS "idx_login_attempts_email_time";
        DROP INDEX IF EXISTS "idx_plan_features_plan";
        DROP INDEX IF EXISTS "idx_role_permissions_role";
        DROP INDEX IF EXISTS "idx_audit_logs_time";
        DROP INDEX IF EXISTS "idx_audit_logs_user_time";
        DROP INDEX IF EXISTS "idx_revoked_access_user";
        DROP INDEX IF EXISTS "idx_tokens_expires";
        DROP INDEX IF EXISTS "idx_tokens_session";
        DROP INDEX IF EXISTS "idx_tokens_hash_live";
        DROP INDEX IF EXISTS "idx_sessions_user";
        DROP INDEX IF EXISTS "idx_user_accounts_created";
        DROP INDEX IF EXISTS "uq_user_accounts_email_live";
        ALTER TABLE "user_subscriptions" DROP CONSTRAINT IF EXISTS "ck_user_subscriptions_status";
        ALTER TABLE "subscription_plans" DROP CONSTRAINT IF EXISTS "ck_plans_price";
        ALTER TABLE "roles" DROP CONSTRAINT IF EXISTS "ck_roles_privilege";
        ALTER TABLE "user_accounts" DROP CONSTRAINT IF EXISTS "ck_user_accounts_email_lower";
        ALTER TABLE "user_accounts" DROP CONSTRAINT IF EXISTS "ck_user_accounts_status";
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
