"""Sign-up, sign-in, token refresh and sign-out, and the password change."""

from typing import Annotated, Any

from fastapi import Form, status
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator

from app.accounts import service
from app.accounts.dependencies import CurrentUser, keyless_router
from app.accounts.models import (
    PasswordChange,
    RefreshRequest,
    TokenResponse,
    User,
    UserCreate,
    UserRead,
)
from app.accounts.ratelimit import LoginGuardDep
from app.core.config import SettingsDep
from app.core.errors import UnauthorizedError
from app.core.types import reject_control_characters
from app.db.session import SessionDep
from app.http.openapi import ErrorMessage, error_responses
from app.observability.metrics import LOGIN_FAILURES
from app.security.passwords import password_problem

# Cache-Control: no-store on every /auth answer (RFC 6749 5.1) comes from the security headers
# middleware, which also covers error answers.
# No API key may call these: keys cannot sign in or out, nor change passwords.
auth_router = keyless_router("/auth", "auth")
password_router = keyless_router("/users", "users")

FormText = Annotated[str, AfterValidator(reject_control_characters)]
WRONG_PASSWORD_RESPONSE: dict[int | str, dict[str, Any]] = {
    403: {
        "model": ErrorMessage,
        "description": "The current password is incorrect, or the account signs in through "
        "single sign-on and has no password; or an API key was sent (keys cannot change "
        "passwords).",
    }
}


def token_response(pair: service.TokenPair) -> TokenResponse:
    return TokenResponse(
        access_token=pair.access_token,
        expires_in=pair.expires_in,
        refresh_token=pair.refresh_token,
        refresh_expires_in=pair.refresh_expires_in,
    )


@auth_router.post(
    "/token",
    response_model=TokenResponse,
    responses=error_responses(401, 422, 429),
    operation_id="login",
)
async def login(
    session: SessionDep,
    settings: SettingsDep,
    guard: LoginGuardDep,
    username: Annotated[FormText, Form(min_length=1, max_length=255, examples=["jane.doe"])],
    password: Annotated[
        FormText, Form(min_length=1, max_length=1024, examples=["correct horse battery"])
    ],
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
) -> TokenResponse:
    """Exchange a username and password (OAuth2 password form) for access and refresh tokens."""
    try:
        async with guard(username):
            user = await service.authenticate(session=session, username=username, password=password)
    except UnauthorizedError:
        LOGIN_FAILURES.inc()
        raise
    pair = await service.start_session(session=session, user=user, settings=settings)
    return token_response(pair)


@auth_router.post(
    "/register",
    response_model=UserRead,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409, 422),
    operation_id="register",
)
async def register(data: UserCreate, session: SessionDep) -> User:
    """Create a regular (non-admin) account; admins are made by an admin or at start-up."""
    return await service.register_user(session=session, data=data)


@auth_router.post(
    "/refresh",
    response_model=TokenResponse,
    responses=error_responses(401, 422),
    operation_id="refresh_token",
)
async def refresh_token(
    data: RefreshRequest, session: SessionDep, settings: SettingsDep
) -> TokenResponse:
    """Trade a refresh token for new tokens; it is spent, and reusing it revokes the sign-in."""
    pair = await service.refresh_session(
        session=session, refresh_token=data.refresh_token, settings=settings
    )
    return token_response(pair)


@auth_router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(422),
    operation_id="logout",
)
async def logout(data: RefreshRequest, session: SessionDep) -> None:
    """End the sign-in this refresh token belongs to: its refresh and access tokens stop working
    at once; an unknown token is ignored (204)."""
    await service.end_session(session=session, refresh_token=data.refresh_token)


@auth_router.post(
    "/logout-all",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401),
    operation_id="logout_all",
)
async def logout_all(user: CurrentUser, session: SessionDep) -> None:
    """Sign out everywhere: every access and refresh token of the caller stops working."""
    await service.end_all_sessions(session=session, user=user)


@password_router.post(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 422) | WRONG_PASSWORD_RESPONSE,
    operation_id="change_password",
)
async def change_password(data: PasswordChange, user: CurrentUser, session: SessionDep) -> None:
    """Change the caller's password; every token issued before stops working, this one too."""
    problem = password_problem(data.new_password, user.username)
    if problem is not None:
        location = ("body", "new_password")
        raise RequestValidationError([{"type": "value_error", "loc": location, "msg": problem}])
    await service.change_password(
        session=session,
        user=user,
        current_password=data.current_password,
        new_password=data.new_password,
    )
