"""Who may act: the account a credential names, checked on every request, and what its role and,
for an API key, the key's scopes allow (no FastAPI here).
"""

import uuid
from dataclasses import dataclass
from typing import Protocol

from app.accounts.keys.crud import KeyAccess
from app.accounts.roles import Permission, allowed, refusal
from app.accounts.roles import Role as Role  # named here too, for the modules above access
from app.core.errors import ForbiddenError, UnauthorizedError
from app.core.types import utc_now
from app.security.api_keys import Credential, KeyCredential, KeyUse

CREDENTIALS_DETAIL = "Could not validate credentials"


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
    """The signed-in account, as the request's checks and the audit trail need it; `scopes` are
    an API key's (None: a signed-in person, whom only the role limits)."""

    id: uuid.UUID
    username: str
    role: Role
    scopes: frozenset[str] | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.admin


def admit(claims: Credential, account: AccountAccess | KeyAccess | None) -> Principal:
    """The account the credential names, if it may still act (401 otherwise): deleted,
    deactivated, a token version since bumped (sign-out everywhere, password change), or the
    token's sign-in ended (sign-out; the identity provider's tokens have none here); for an API
    key, also a key revoked or expired."""
    if isinstance(claims, KeyCredential):
        return _admit_key(claims, account)
    if (
        account is None
        or isinstance(account, KeyAccess)
        or not account.is_active
        or account.token_version != claims.version
    ):
        raise UnauthorizedError(CREDENTIALS_DETAIL)
    if claims.sign_in_id is not None and not account.signed_in:
        raise UnauthorizedError(CREDENTIALS_DETAIL)
    return Principal(id=account.id, username=account.username, role=Role(account.role))


def _admit_key(credential: KeyCredential, found: AccountAccess | KeyAccess | None) -> Principal:
    if not isinstance(found, KeyAccess):
        raise UnauthorizedError(CREDENTIALS_DETAIL)
    account, key = found
    if not account.is_active or key.expires_at <= utc_now():
        raise UnauthorizedError(CREDENTIALS_DETAIL)
    credential.used = KeyUse(key_id=key.id, owner_id=account.id, last_used_at=key.last_used_at)
    scopes = frozenset(key.scopes.split())
    return Principal(account.id, account.username, Role(account.role), scopes)


def require(principal: Principal, permission: Permission) -> Principal:
    """The principal, if its role (now) and, for an API key, the key's scopes allow it (403)."""
    if not allowed(principal.role, permission):
        raise ForbiddenError(refusal(permission))
    if principal.scopes is not None and permission not in principal.scopes:
        raise ForbiddenError(f"This API key does not have the {permission} scope")
    return principal
