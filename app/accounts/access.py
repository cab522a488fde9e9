"""Who may act: the account a token names, checked on every request (no FastAPI here)."""

import uuid
from dataclasses import dataclass
from typing import Protocol

from app.core.errors import ForbiddenError, UnauthorizedError
from app.security.tokens import AccessClaims

CREDENTIALS_DETAIL = "Could not validate credentials"


class AccountAccess(Protocol):
    """What authorizing needs of an account and of the token's sign-in (an `Access` row)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def username(self) -> str: ...
    @property
    def is_admin(self) -> bool: ...
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
    is_admin: bool


def admit(claims: AccessClaims, account: AccountAccess | None) -> Principal:
    """The account the token names, if it may still act (401 otherwise): deleted, deactivated,
    a token version since bumped (sign-out everywhere, password change), or the token's sign-in
    ended (sign-out)."""
    if account is None or not account.is_active or account.token_version != claims.version:
        raise UnauthorizedError(CREDENTIALS_DETAIL)
    if not account.signed_in:
        raise UnauthorizedError(CREDENTIALS_DETAIL)
    return Principal(id=account.id, username=account.username, is_admin=account.is_admin)


def require_admin(principal: Principal) -> Principal:
    if not principal.is_admin:
        raise ForbiddenError("Administrator privileges are required")
    return principal
