"""Who is calling: the bearer token names a user, and the user row (loaded per request) decides."""

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from app.core.config import Settings, get_settings
from app.core.db import SessionDep
from app.core.errors import ForbiddenError, UnauthorizedError
from app.core.tokens import InvalidTokenError, decode_access_token
from app.users import crud
from app.users.models import User

# auto_error=False: a missing token gets the same 401 body as a bad one, from one place.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


async def get_request_settings(request: Request) -> Settings:
    """The settings, as a dependency that runs on the event loop.

    FastAPI sends a plain `def` dependency such as `get_settings` to a worker thread on every
    request, which cost more than the rest of a small request together. Overrides of
    `get_settings` (the tests' way to configure an app) still apply.
    """
    return request.app.dependency_overrides.get(get_settings, get_settings)()


SettingsDep = Annotated[Settings, Depends(get_request_settings)]
CREDENTIALS_DETAIL = "Could not validate credentials"


async def get_current_user(
    request: Request,
    token: Annotated[str | None, Depends(oauth2_scheme)],
    session: SessionDep,
    settings: SettingsDep,
) -> User:
    if token is None:
        raise UnauthorizedError("Not authenticated")
    try:
        claims = decode_access_token(token, settings)
    except InvalidTokenError:
        raise UnauthorizedError(CREDENTIALS_DETAIL) from None
    user = await crud.get_user(session=session, user_id=claims.user_id)
    # A deleted or deactivated account's tokens stop working at once, not when they expire;
    # so do tokens issued before a sign-out everywhere or a password change (a newer version).
    if user is None or not user.is_active or user.token_version != claims.version:
        raise UnauthorizedError(CREDENTIALS_DETAIL)
    request.state.user_id = user.id  # for the access log line
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_current_admin(user: CurrentUser) -> User:
    if not user.is_admin:
        raise ForbiddenError("Administrator privileges are required")
    return user


AdminUser = Annotated[User, Depends(get_current_admin)]
