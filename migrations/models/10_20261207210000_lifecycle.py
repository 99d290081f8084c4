"""Accounts over their whole life (docs/auth.md, "Your data"; docs/operations.md, "Purging
deleted accounts").

- `user_accounts.status` may be `pending_deletion`; the deletion's schedule sits on the row:
  `deletion_requested_at`, `deletion_at` (the end of the grace), `status_before_deletion`
  (what a cancel restores), `deletion_cancel_hash` (the SHA-256 of the mailed cancel link;
  NULL when an administrator scheduled it: only an administrator cancels that one).
- `email_changes`: one row per requested change of address, with the hashes of its two links
  (confirm, to the new address; cancel, to the old one), the password version at the request
  (a revert makes a password set since unusable) and the revert window.
- `erasure_ledger`: the id of every purged account and when. A copy is appended outside the
  database (ERASURE_LEDGER_PATH); a restore from an older backup replays it before serving.
Rows are read and written in SQL (manas360.queries); the models snapshot below is migration 3's.
Numbered 10: migration 9 comes from another line of work; aerich applies whichever file is
not yet recorded, so the gap is harmless."""

from tortoise import BaseDBAsyncClient

RUN_IN_TRANSACTION = True


async def upgrade(db: BaseDBAsyncClient) -> str:
    return """
        ALTER TABLE "user_accounts" DROP CONSTRAINT IF EXISTS "ck_user_accounts_status";
        ALTER TABLE "user_accounts" ADD CONSTRAINT "ck_user_accounts_status"
            CHECK ("status" IN ('active', 'disabled', 'pending_deletion'));
        ALTER TABLE "user_accounts"
            ADD COLUMN IF NOT EXISTS "deletion_requested_at" TIMESTAMPTZ,
            ADD COLUMN IF NOT EXISTS "deletion_at" TIMESTAMPTZ,
            ADD COLUMN IF NOT EXISTS "status_before_deletion" VARCHAR(16),
            ADD COLUMN IF NOT EXISTS "deletion_cancel_hash" CHAR(64);
        ALTER TABLE "user_accounts" ADD CONSTRAINT "ck_user_accounts_deletion"
            CHECK (("status" = 'pending_deletion') = ("deletion_at" IS NOT NULL) OR "deleted_at" IS NOT NULL);
        CREATE INDEX IF NOT EXISTS "idx_user_accounts_deletion_due" ON "user_accounts" ("deletion_at", "id")
            WHERE "status" = 'pending_deletion' AND "deleted_at" IS NULL;
        CREATE UNIQUE INDEX IF NOT EXISTS "uq_user_accounts_deletion_cancel" ON "user_accounts" ("deletion_cancel_hash")
            WHERE "deletion_cancel_hash" IS NOT NULL;

        -- The confirm link of an email change is a one-time token like a reset link: voided by
        -- every security event, its waiting mail discarded with it.
        ALTER TABLE "account_tokens" DROP CONSTRAINT IF EXISTS "ck_account_tokens_purpose";
        ALTER TABLE "account_tokens" ADD CONSTRAINT "ck_account_tokens_purpose"
            CHECK ("purpose" IN ('password_reset', 'email_verification', 'email_change'));

        CREATE TABLE IF NOT EXISTS "email_changes" (
            "id" BIGSERIAL PRIMARY KEY,
            "user_id" UUID NOT NULL REFERENCES "user_accounts" ("id") ON DELETE CASCADE,
            "old_email" VARCHAR(320) NOT NULL,
            "new_email" VARCHAR(320) NOT NULL,
            "requested_at" TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
            "password_version" INT NOT NULL,
            "confirm_hash" CHAR(64) NOT NULL,
            "confirm_expires_at" TIMESTAMPTZ NOT NULL,
            "cancel_hash" CHAR(64) NOT NULL,
            "cancel_expires_at" TIMESTAMPTZ NOT NULL,
            "confirmed_at" TIMESTAMPTZ,
            "revert_until" TIMESTAMPTZ,
            "cancelled_at" TIMESTAMPTZ,
            "reverted_at" TIMESTAMPTZ,
            CONSTRAINT "uq_email_changes_confirm" UNIQUE ("confirm_hash"),
            CONSTRAINT "uq_email_changes_cancel" UNIQUE ("cancel_hash")
        );
        COMMENT ON TABLE "email_changes" IS 'Requested changes of address: hashed confirm and cancel links, the revert window';
        CREATE INDEX IF NOT EXISTS "idx_email_changes_user" ON "email_changes" ("user_id", "id" DESC);
        CREATE INDEX IF NOT EXISTS "idx_email_changes_reserved" ON "email_changes" (LOWER("old_email"))
            WHERE "confirmed_at" IS NOT NULL AND "reverted_at" IS NULL;

        CREATE TABLE IF NOT EXISTS "erasure_ledger" (
            "user_id" UUID NOT NULL PRIMARY KEY,
            "erased_at" TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
            "exported_at" TIMESTAMPTZ
        );
        COMMENT ON TABLE "erasure_ledger" IS 'Purged account ids; replayed after a restore (docs/operations.md)';
        CREATE INDEX IF NOT EXISTS "idx_erasure_ledger_unexported" ON "erasure_ledger" ("erased_at")
            WHERE "exported_at" IS NULL;

        -- What the purge finds by address or key rather than by user id.
        CREATE INDEX IF NOT EXISTS "idx_outbox_recipient" ON "outbox" (LOWER("recipient")) WHERE "channel" = 'mail';
        CREATE INDEX IF NOT EXISTS "idx_rate_limit_logs_key" ON "rate_limit_logs" ("key");
        CREATE INDEX IF NOT EXISTS "idx_audit_logs_unattributed_email" ON "audit_logs" (LOWER("after" ->> 'email'))
            WHERE "target_user_id" IS NULL;
        CREATE INDEX IF NOT EXISTS "idx_audit_logs_archive_target" ON "audit_logs_archive" ("target_user_id");
        CREATE INDEX IF NOT EXISTS "idx_audit_logs_archive_actor" ON "audit_logs_archive" ("actor_id")
            WHERE "actor_id" IS NOT NULL;

        -- An audit document without the personal values of one person: the keys that name
        -- or locate someone, and any value that contains their address or display name.
        CREATE OR REPLACE FUNCTION erase_personal(doc JSONB, email TEXT, name TEXT) RETURNS JSONB
        LANGUAGE sql IMMUTABLE AS $$
            SELECT CASE WHEN doc IS NULL OR jsonb_typeof(doc) <> 'object' THEN doc ELSE COALESCE((
                SELECT jsonb_object_agg(e.k, e.v) FROM jsonb_each(doc) AS e(k, v)
                WHERE e.k <> ALL (ARRAY['email', 'new_email', 'old_email', 'display_name', 'ip', 'user_agent',
                                        'recipient'])
                  AND position(lower(email) IN lower(e.v::text)) = 0
                  AND (length(coalesce(name, '')) < 3 OR position(lower(name) IN lower(e.v::text)) = 0)),
                '{}'::jsonb) END
        $$;"""


async def downgrade(db: BaseDBAsyncClient) -> str:
    return """
        DROP FUNCTION IF EXISTS erase_personal(JSONB, TEXT, TEXT);
        DROP INDEX IF EXISTS "idx_audit_logs_archive_actor";
        DROP INDEX IF EXISTS "idx_audit_logs_archive_target";
        DROP INDEX IF EXISTS "idx_audit_logs_unattributed_email";
        DROP INDEX IF EXISTS "idx_rate_limit_logs_key";
        DROP INDEX IF EXISTS "idx_outbox_recipient";
        DROP TABLE IF EXISTS "erasure_ledger";
        DROP TABLE IF EXISTS "email_changes";
        DELETE FROM "account_tokens" WHERE "purpose" = 'email_change';
        ALTER TABLE "account_tokens" DROP CONSTRAINT IF EXISTS "ck_account_tokens_purpose";
        ALTER TABLE "account_tokens" ADD CONSTRAINT "ck_account_tokens_purpose"
            CHECK ("purpose" IN ('password_reset', 'email_verification'));
        DROP INDEX IF EXISTS "uq_user_accounts_deletion_cancel";
        DROP INDEX IF EXISTS "idx_user_accounts_deletion_due";
        ALTER TABLE "user_accounts" DROP CONSTRAINT IF EXISTS "ck_user_accounts_deletion";
        ALTER TABLE "user_accounts" DROP COLUMN IF EXISTS "deletion_cancel_hash",
            DROP COLUMN IF EXISTS "status_before_deletion", DROP COLUMN IF EXISTS "deletion_at",
            DROP COLUMN IF EXISTS "deletion_requested_at";
        UPDATE "user_accounts" SET "status" = 'disabled' WHERE "status" = 'pending_deletion';
        ALTER TABLE "user_accounts" DROP CONSTRAINT IF EXISTS "ck_user_accounts_status";
        ALTER TABLE "user_accounts" ADD CONSTRAINT "ck_user_accounts_status" CHECK ("status" IN ('active', 'disabled'));"""


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
