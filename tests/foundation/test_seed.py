"""Seeding: reference data per API.md, idempotent, never undoing an administrator's change."""

from __future__ import annotations

import subprocess
import sys

from tortoise import connections

from manas360 import reference
from manas360.security.passwords import verify_password
from manas360.services.seeding import reference_counts, seed_reference_data, seed_superadmin


async def _rows(sql: str, *values):
    return await connections.get("default").execute_query_dict(sql, list(values))


async def test_reference_data_matches_the_contract(db):
    counts = await reference_counts()
    assert counts["roles"] == 5 and counts["subscription_plans"] == 5 and counts["features"] == 14
    roles = {r["name"]: r["privilege_level"] for r in await _rows("SELECT name, privilege_level FROM roles")}
    assert roles == {"guest": 0, "user": 10, "subscriber": 50, "admin": 90, "superadmin": 100}
    plans = [r["name"] for r in await _rows("SELECT name FROM subscription_plans ORDER BY tier")]
    assert plans == ["free", "basic", "premium", "professional", "enterprise"]
    permissions = {r["name"] for r in await _rows("SELECT name FROM permissions")}
    assert {"profile.read", "profile.write", "dashboard.read", "analytics.read", "users.read", "users.write",
            "roles.read", "roles.assign", "roles.manage", "plans.manage", "subscriptions.manage",
            "audit.read"} <= permissions


async def test_each_plan_includes_every_feature_of_the_tiers_below(db):
    rows = await _rows("SELECT p.name AS plan, f.name AS feature FROM plan_features pf "
                       "JOIN subscription_plans p ON p.id = pf.plan_id JOIN features f ON f.id = pf.feature_id")
    features: dict[str, set[str]] = {}
    for row in rows:
        features.setdefault(row["plan"], set()).add(row["feature"])
    order = list(reference.PLANS)
    for cheaper, dearer in zip(order, order[1:]):
        assert features[cheaper] < features[dearer]
    assert "premium_dashboard" in features["premium"] and "premium_dashboard" not in features["basic"]
    assert "api_access" in features["professional"]
    assert len(features["enterprise"]) == 14


async def test_seeding_again_inserts_nothing_and_keeps_admin_changes(db):
    await _rows("DELETE FROM role_permissions WHERE role_id = (SELECT id FROM roles WHERE name='admin') "
                "AND permission_id = (SELECT id FROM permissions WHERE name='audit.read') RETURNING 1")
    before = await reference_counts()
    report = await seed_reference_data()
    assert (report.roles, report.permissions, report.plans, report.features,
            report.role_permissions, report.plan_features) == (0, 0, 0, 0, 0, 0)
    assert await reference_counts() == before
    await _rows("INSERT INTO role_permissions (role_id, permission_id) SELECT r.id, p.id FROM roles r, permissions p "
                "WHERE r.name='admin' AND p.name='audit.read' RETURNING 1")


async def test_superadmin_is_created_then_unchanged_then_updated(db):
    email = "Root.Admin@Example.COM "
    assert await seed_superadmin(email=email, password="first-password-1", bcrypt_cost=4) == "created"
    assert await seed_superadmin(email=email, password="first-password-1", bcrypt_cost=4) == "unchanged"
    assert await seed_superadmin(email=email, password="second-password-2", bcrypt_cost=4) == "updated"
    rows = await _rows("SELECT u.email, u.password_hash, r.name AS role FROM user_accounts u "
                       "JOIN roles r ON r.id = u.role_id WHERE u.email = $1", "root.admin@example.com")
    assert len(rows) == 1 and rows[0]["role"] == "superadmin"
    assert await verify_password(password="second-password-2", password_hash=rows[0]["password_hash"])


def test_seed_command_is_idempotent_and_reports(environ, database):
    env = {**environ, "SUPERADMIN_EMAIL": "cli-root@example.com", "SUPERADMIN_PASSWORD": "cli-password-123",
           "PATH": "/usr/bin:/bin"}
    outputs = [subprocess.run([sys.executable, "-m", "manas360.cli", "seed"], env=env, capture_output=True,
                              text=True, timeout=60) for _ in range(2)]
    assert [o.returncode for o in outputs] == [0, 0], outputs[0].stderr
    assert "superadmin cli-root@example.com: created" in outputs[0].stdout
    assert "+0 roles" in outputs[1].stdout and "superadmin cli-root@example.com: unchanged" in outputs[1].stdout
