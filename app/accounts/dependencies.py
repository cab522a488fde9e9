"""Who is calling, as dependencies: the bearer credential (a token's claims or an API key), then
the account it names, and what that account may do."""

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordBearer
from fastapi.security.utils import get_authorization_scheme_param

from app.accounts import crud, sso
from app.accounts.access import CREDENTIALS_DETAIL, AccountAccess, Principal, admit, require
from app.accounts.keys import crud as key_crud
from app.accounts.keys.crud import KeyAccess
from app.accounts.keys.usage import record_key_use
from app.accounts.models import User
from app.accounts.roles import Permission
from app.core.config import Settings, request_settings
from app.core.errors import ForbiddenError, UnauthorizedError
from app.db.engine import Database
from app.db.reader import Reader
from app.db.session import ReaderDep, SessionDep, database
from app.http.deferred import defer
from app.http.openapi import ErrorMessage
from app.http.versioning import API_PREFIX
from app.security.api_keys import (
    Credential,
    KeyCredential,
    api_key_credential,
    looks_like_api_key,
)
from app.security.oidc import OidcVerifier
from app.security.tokens import InvalidTokenError, decode_access_token

KEYS_REFUSED = (
    "API keys cannot sign in or out, change passwords, or manage keys or accounts; "
    "sign in with a username and password"
)
SCHEME_DESCRIPTION = (
    "Sign in with a username and password; no client id or secret is needed. Programs may "
    "send an API key (`erk_...`, made at `POST /v1/users/me/api-keys`) the same way, as "
    "`Authorization: Bearer erk_...`, on the employee operations, within the key's scopes."
)


class BearerClaims(OAuth2PasswordBearer):
    """The bearer credential as one dependency, shown in OpenAPI as the password flow (a
    subclass: one dependency less to solve on every request). A missing token gets the same 401
    body as a bad one; so does a malformed API key. With single sign-on, the identity
    provider's tokens are accepted too: their claims are those of the account they name
    (app.accounts.sso)."""

    def __init__(self) -> None:
        super().__init__(
            tokenUrl=f"{API_PREFIX}/auth/token",
            scheme_name="OAuth2PasswordBearer",
            description=SCHEME_DESCRIPTION,
            auto_error=False,
        )

    async def __call__(self, request: Request) -> Credential:  # type: ignore[override]
        token = await super().__call__(request)
        if token is None:
            raise UnauthorizedError("Not authenticated")
        claims = await verify_bearer(
            token,
            settings=request_settings(request),
            oidc=request.app.state.oidc,
            db=database(request),
        )
        if isinstance(claims, KeyCredential):
            # Once the answer is out: the key's last use, at most once a minute.
            defer(request.scope, partial(record_key_use, request, claims))
        else:
            request.state.user_id = claims.user_id  # for the access log line
        return claims


async def verify_bearer(
    token: str, *, settings: Settings, oidc: OidcVerifier | None, db: Database
) -> Credential:
    """What a bearer credential stands for, verified in full (401 otherwise); also what a live
    stream checks again while it is open (app.changes.streams)."""
    try:
        # The one place a credential's kind is decided: an API key (by its prefix), the
        # identity provider's token (RS256/ES256, with single sign-on on) or the service's
        # own; each is then verified in full.
        if looks_like_api_key(token):
            return api_key_credential(token)
        if oidc is not None and oidc.issued(token):
            identity = await oidc.verify(token)
            return await sso.sso_claims(
                database=db, identity=identity, role_map=settings.oidc_role_map
            )
        return decode_access_token(token, settings)
    except InvalidTokenError:
        raise UnauthorizedError(CREDENTIALS_DETAIL) from None


get_claims = BearerClaims()

# For a handler whose service reads the account together with its own data in one statement
# and admits it there (`app.accounts.access.admit`).
ClaimsDep = Annotated[Credential, Depends(get_claims)]


async def get_access(*, reader: Reader, claims: Credential) -> AccountAccess | KeyAccess | None:
    """The account the credential names (and its sign-in, or for a key the key), in one
    statement."""
    if isinstance(claims, KeyCredential):
        return await key_crud.get_key_access(reader=reader, key_hash=claims.key_hash)
    return await crud.get_user_access(
        reader=reader, user_id=claims.user_id, sign_in_id=claims.sign_in_id
    )


async def get_principal(claims: ClaimsDep, reader: ReaderDep) -> Principal:
    return admit(claims, await get_access(reader=reader, claims=claims))


# Any signed-in account or API key, as a request sees it (no ORM instance: cheap).
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


# Documented on the routers that refuse keys; a route's own 403 says it as well.
KEYS_REFUSED_RESPONSE: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorMessage, "description": "An API key was sent: " + KEYS_REFUSED + "."}
}


def keyless_router(prefix: str, tag: str) -> APIRouter:
    """A router of sign-in or account operations: no API key may call them."""
    return APIRouter(
        prefix=prefix,
        tags=[tag],
        dependencies=[Depends(refuse_api_keys)],
        responses=KEYS_REFUSED_RESPONSE,
    )


async def refuse_api_keys(request: Request) -> None:
    """Router dependency of sign-in and account routes: an API key is refused (403) whether or
    not it is valid, before anything else is read."""
    scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
    if scheme.lower() == "bearer" and looks_like_api_key(token.strip()):
        raise ForbiddenError(KEYS_REFUSED)


async def get_signed_in(principal: CurrentPrincipal) -> Principal:
    """A person signed in with a token; never an API key."""
    if principal.scopes is not None:
        raise ForbiddenError(KEYS_REFUSED)
    return principal


SignedIn = Annotated[Principal, Depends(get_signed_in)]


async def get_current_user(claims: ClaimsDep, session: SessionDep) -> User:
    """The signed-in account as an ORM instance, for the routes that change it (no API key)."""
    if isinstance(claims, KeyCredential):
        raise ForbiddenError(KEYS_REFUSED)
    found = await crud.get_user_as(
        session=session, user_id=claims.user_id, sign_in_id=claims.sign_in_id
    )
    admit(claims, None if found is None else found[1])
    assert found is not None  # admit refused a missing account
    return found[0]


CurrentUser = Annotated[User, Depends(get_current_user)]


def permitted(permission: Permission) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency: the caller, if its role and (for a key) its scopes allow `permission`."""

    async def check(principal: CurrentPrincipal) -> Principal:
        return require(principal, permission)

    check.__name__ = f"require_{permission.replace(':', '_')}"
    return check


EmployeeReader = Annotated[Principal, Depends(permitted("employees:read"))]
HistoryReader = Annotated[Principal, Depends(permitted("history:read"))]
AccountReader = Annotated[Principal, Depends(permitted("accounts:read"))]
AdminUser = Annotated[Principal, Depends(permitted("accounts:write"))]
