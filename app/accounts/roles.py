"""Roles and what each may do: every role decision of the service is `allowed` (no imports from
the domain, so that models and SQL can name a role too)."""

from enum import StrEnum
from typing import Literal

ADMIN_REQUIRED = "Administrator privileges are required"
AUDITOR_REQUIRED = "Administrator or auditor privileges are required"


class Role(StrEnum):
    """What an account may do: admins everything; auditors what users read, plus the histories
    and the accounts; users read employee records."""

    admin = "admin"
    auditor = "auditor"
    user = "user"


# What can be allowed; an API key's scopes are the first three (app.accounts.keys.models).
Permission = Literal[
    "employees:read", "employees:write", "history:read", "accounts:read", "accounts:write"
]
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.admin: frozenset(
        {"employees:read", "employees:write", "history:read", "accounts:read", "accounts:write"}
    ),
    Role.auditor: frozenset({"employees:read", "history:read", "accounts:read"}),
    Role.user: frozenset({"employees:read"}),
}


def allowed(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]


def refusal(permission: Permission) -> str:
    """What a 403 says to a role without `permission`: who has it."""
    return AUDITOR_REQUIRED if allowed(Role.auditor, permission) else ADMIN_REQUIRED
