"""Who may act: the account a token names, checked on every request (no FastAPI here)."""

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from app.core.errors import ForbiddenError, UnauthorizedError
from app.security.tokens import AccessClaims

CREDENTIALS_DETAIL = "Could not validate credentials"
ADMIN_REQUIRED = "Administrator privileges are required"
AUDITOR_REQUIRED = "Administrator or auditor privileges are required"


class Role(StrEnum):
    """What an account may do: admins everything; auditors what users read, plus the histories
    and the accounts; users read employee records."""

    admin = "admin"
    auditor = "auditor"
    user = "user"


class AccountAccess(Protocol):
    """What authorizing needs of an account and of the token's sign-in (an `Access` row)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def username(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def is_active(self) -> bool: ...
    @property
    def token_version(self) -> int: ...
    @property
    def signed_in(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Principal:
    """The signed-in account, as the request's checks and the audit trail need it."""

    id: uuid.UUID
    username: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.admin


def admit(claims: AccessClaims, account: AccountAccess | None) -> Principal:
    """The account the token names, if it may still act (401 otherwise): deleted, deactivated,
    a token version since bumped (sign-out everywhere, password change), or the token's sign-in
    ended (sign-out; the identity provider's tokens have none here)."""
    if account is None or not account.is_active or account.token_version != claims.version:
        raise UnauthorizedError(CREDENTIALS_DETAIL)
    if claims.sign_in_id is not None and not account.signed_in:
        raise UnauthorizedError(CREDENTIALS_DETAIL)
    return Principal(id=account.id, username=account.username, role=Role(account.role))


def require_admin(principal: Principal) -> Principal:
    if principal.role is not Role.admin:
        raise ForbiddenError(ADMIN_REQUIRED)
    return principal


def require_auditor(principal: Principal) -> Principal:
    """An administrator or an auditor: those who read histories and accounts."""
    if principal.role not in (Role.admin, Role.auditor):
        raise ForbiddenError(AUDITOR_REQUIRED)
    return principal
