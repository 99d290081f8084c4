"""The default catalog seeded by `manas360 seed`: roles, permissions, plans, features and the
default role->permission and plan->feature mappings (docs/api.md, "Roles, permissions, features")."""

from __future__ import annotations

ROLES: dict[str, int] = {"guest": 0, "user": 10, "subscriber": 50, "admin": 90, "superadmin": 100}
DEFAULT_ROLE = "user"
SUPERADMIN_ROLE = "superadmin"
ADMIN_PRIVILEGE = 90

PERMISSIONS: dict[str, str] = {
    "profile.read": "Read one's own profile",
    "profile.write": "Edit one's own profile",
    "dashboard.read": "Open the dashboard",
    "analytics.read": "Read platform analytics",
    "users.read": "List and read user accounts",
    "users.write": "Unlock users and revoke their sessions",
    "roles.read": "List roles and their permissions",
    "roles.assign": "Change a user's role (within the escalation rule)",
    "roles.manage": "Change the permissions of a role",
    "plans.manage": "Change the features of a plan",
    "subscriptions.manage": "Change a user's subscription",
    "audit.read": "Read the audit log",
}

_MEMBER = ["profile.read", "profile.write", "dashboard.read"]
_ADMIN = _MEMBER + [
    "analytics.read",
    "users.read",
    "users.write",
    "roles.read",
    "roles.assign",
    "subscriptions.manage",
    "audit.read",
]
ROLE_PERMISSIONS: dict[str, list[str]] = {
    "guest": ["profile.read"],
    "user": _MEMBER,
    "subscriber": _MEMBER,
    "admin": _ADMIN,
    "superadmin": list(PERMISSIONS),
}

# name -> (display name, tier, monthly price in cents); tiers are cheapest first.
PLANS: dict[str, tuple[str, int, int]] = {
    "free": ("Free", 0, 0),
    "basic": ("Basic", 1, 999),
    "premium": ("Premium", 2, 1999),
    "professional": ("Professional", 3, 4999),
    "enterprise": ("Enterprise", 4, 9999),
}
FREE_PLAN = "free"

# feature -> the cheapest plan that includes it; every plan includes the tiers below it.
FEATURES: dict[str, tuple[str, str]] = {
    "mood_tracking": ("free", "Daily mood check-ins"),
    "self_assessments": ("free", "Standard self-assessment questionnaires"),
    "community_forum": ("free", "Moderated peer community"),
    "guided_meditations": ("basic", "Guided meditation library"),
    "journaling": ("basic", "Private journal with prompts"),
    "progress_reports": ("basic", "Monthly progress reports"),
    "premium_dashboard": ("premium", "Premium wellbeing dashboard"),
    "therapist_chat": ("premium", "Asynchronous chat with a therapist"),
    "personalized_plans": ("premium", "Personalised care plans"),
    "api_access": ("professional", "Programmatic API access"),
    "group_therapy": ("professional", "Group therapy sessions"),
    "advanced_analytics": ("professional", "Advanced analytics and exports"),
    "sso": ("enterprise", "Single sign-on for organisations"),
    "dedicated_support": ("enterprise", "A dedicated support manager"),
}


def plan_features(plan: str) -> list[str]:
    """Default features of `plan`: its own and those of every cheaper tier."""
    tier = PLANS[plan][1]
    return [name for name, (first_plan, _) in FEATURES.items() if PLANS[first_plan][1] <= tier]
