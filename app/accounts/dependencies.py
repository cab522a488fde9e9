"""Who is calling, as dependencies: the bearer token's claims, then the account they name."""

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from app.accounts import crud, sso
from app.accounts.access import (
    CREDENTIALS_DETAIL,
    Principal,
    admit,
    require_admin,
    require_auditor,
)
from app.accounts.models import User
from app.core.config import request_settings
from app.core.errors import UnauthorizedError
from app.db.session import ReaderDep, SessionDep, database
from app.http.versioning import API_PREFIX
from app.security.oidc import OidcVerifier
from app.security.tokens import AccessClaims, InvalidTokenError, decode_access_token


class BearerClaims(OAuth2PasswordBearer):
    """The bearer token's claims as one dependency, shown in OpenAPI as the password flow (a
    subclass: one dependency less to solve on every request). A missing token gets the same 401
    body as a bad one. With single sign-on, the identity provider's tokens are accepted too:
    their claims are those of the account they name (app.accounts.sso)."""

    def __init__(self) -> None:
        super().__init__(
            tokenUrl=f"{API_PREFIX}/auth/token",
            scheme_name="OAuth2PasswordBearer",
            description="Sign in with a username and password; no client id or secret is needed.",
            auto_error=False,
        )

    async def __call__(self, request: Request) -> AccessClaims:  # type: ignore[override]
        token = await super().__call__(request)
        if token is None:
            raise UnauthorizedError("Not authenticated")
        settings = request_settings(request)
        oidc: OidcVerifier | None = request.app.state.oidc
        try:
            # The one place a token's kind is decided: the identity provider's (RS256/ES256,
            # with single sign-on on) or the service's own; each is then verified in full.
            if oidc is not None and oidc.issued(token):
                identity = await oidc.verify(token)
                claims = await sso.sso_claims(
                    database=database(request), identity=identity, role_map=settings.oidc_role_map
                )
            else:
                claims = decode_access_token(token, settings)
        except InvalidTokenError:
            raise UnauthorizedError(CREDENTIALS_DETAIL) from None
        request.state.user_id = claims.user_id  # for the access log line
        return claims


get_claims = BearerClaims()

# For a handler whose service reads the account together with its own data in one statement
# and admits it there (`app.accounts.access.admit`).
ClaimsDep = Annotated[AccessClaims, Depends(get_claims)]


async def get_principal(claims: ClaimsDep, reader: ReaderDep) -> Principal:
    account = await crud.get_user_access(
        reader=reader, user_id=claims.user_id, sign_in_id=claims.sign_in_id
    )
    return admit(claims, account)


# Any signed-in account, as a request sees it (no ORM instance: cheap on every request).
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def get_current_user(claims: ClaimsDep, session: SessionDep) -> User:
    """The signed-in account as an ORM instance, for the routes that change it."""
    found = await crud.get_user_as(
        session=session, user_id=claims.user_id, sign_in_id=claims.sign_in_id
    )
    admit(claims, None if found is None else found[1])
    assert found is not None  # admit refused a missing account
    return found[0]


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_admin(principal: CurrentPrincipal) -> Principal:
    return require_admin(principal)


AdminUser = Annotated[Principal, Depends(get_admin)]


async def get_auditor(principal: CurrentPrincipal) -> Principal:
    return require_auditor(principal)


# An administrator or an auditor: the readers of histories and accounts.
AuditorUser = Annotated[Principal, Depends(get_auditor)]
