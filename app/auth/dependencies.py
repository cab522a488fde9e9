"""Who is calling: the bearer token names a user, and the user row (loaded per request) decides."""

import uuid
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from app.core.config import Settings, get_settings
from app.core.db import SessionDep
from app.core.errors import ForbiddenError, UnauthorizedError
from app.core.tokens import AccessClaims, InvalidTokenError, decode_access_token
from app.users import crud
from app.users.models import User


def request_settings(request: Request) -> Settings:
    """The settings a request sees: overrides of `get_settings` (the tests' way to configure an
    app) apply. Called directly by the dependencies on every request, which saves each of them
    a dependency of its own."""
    return request.app.dependency_overrides.get(get_settings, get_settings)()


async def get_request_settings(request: Request) -> Settings:
    """The settings, as a dependency that runs on the event loop.

    FastAPI sends a plain `def` dependency such as `get_settings` to a worker thread on every
    request, which cost more than the rest of a small request together.
    """
    return request_settings(request)


SettingsDep = Annotated[Settings, Depends(get_request_settings)]
CREDENTIALS_DETAIL = "Could not validate credentials"


class AccountAccess(Protocol):
    """What authorizing needs of an account: a row of `crud.ACCESS_COLUMNS` or a `User`."""

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


@dataclass(frozen=True, slots=True)
class Principal:
    """The signed-in account, as the request's checks and the audit trail need it."""

    id: uuid.UUID
    username: str
    is_admin: bool


def bearer_claims(token: str | None, settings: Settings) -> AccessClaims:
    """The token's claims (401 when missing or invalid); nothing is looked up yet."""
    if token is None:
        raise UnauthorizedError("Not authenticated")
    try:
        return decode_access_token(token, settings)
    except InvalidTokenError:
        raise UnauthorizedError(CREDENTIALS_DETAIL) from None


class BearerClaims(OAuth2PasswordBearer):
    """The bearer token's claims, as one dependency that OpenAPI shows as the password flow.

    A subclass rather than a dependency on the scheme: each dependency costs FastAPI a solve on
    every request, and every authenticated request needs this one. `auto_error=False`: a missing
    token gets the same 401 body as a bad one, from `bearer_claims`.
    """

    def __init__(self) -> None:
        super().__init__(tokenUrl="/auth/token", auto_error=False)

    async def __call__(self, request: Request) -> AccessClaims:  # type: ignore[override]
        token = await super().__call__(request)
        return bearer_claims(token, request_settings(request))


get_claims = BearerClaims()

# For a handler that loads the account together with its own data in one statement: it must
# pass the row to `authorize` before using anything else.
ClaimsDep = Annotated[AccessClaims, Depends(get_claims)]


def authorize(request: Request, claims: AccessClaims, account: AccountAccess | None) -> Principal:
    """The account the token names, if it may still act (401 otherwise).

    A deleted or deactivated account's tokens stop working at once, not when they expire; so do
    tokens issued before a sign-out everywhere or a password change (a newer version).
    """
    if account is None or not account.is_active or account.token_version != claims.version:
        raise UnauthorizedError(CREDENTIALS_DETAIL)
    request.state.user_id = account.id  # for the access log line
    return Principal(id=account.id, username=account.username, is_admin=account.is_admin)


async def get_principal(request: Request, claims: ClaimsDep, session: SessionDep) -> Principal:
    account = await crud.get_user_access(session=session, user_id=claims.user_id)
    return authorize(request, claims, account)


# Any signed-in account, as a request sees it (no ORM instance: cheap on every request).
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def get_current_user(request: Request, claims: ClaimsDep, session: SessionDep) -> User:
    """The signed-in account as an ORM instance, for the routes that change it."""
    user = await crud.get_user(session=session, user_id=claims.user_id)
    authorize(request, claims, user)
    assert user is not None  # authorize refused a missing account
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_admin(principal: Principal) -> Principal:
    if not principal.is_admin:
        raise ForbiddenError("Administrator privileges are required")
    return principal


async def get_admin(principal: CurrentPrincipal) -> Principal:
    return require_admin(principal)


AdminUser = Annotated[Principal, Depends(get_admin)]
