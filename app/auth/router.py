"""Sign-up and token issue."""

from typing import Annotated

from fastapi import APIRouter, Form, Response, status
from pydantic import AfterValidator

from app.auth import service
from app.auth.dependencies import SettingsDep
from app.auth.models import TokenResponse
from app.core.db import SessionDep
from app.core.openapi import error_responses
from app.core.tokens import create_access_token
from app.core.types import reject_control_characters
from app.users.models import User, UserCreate, UserRead

router = APIRouter(prefix="/auth", tags=["auth"])

FormText = Annotated[str, AfterValidator(reject_control_characters)]


@router.post(
    "/token",
    response_model=TokenResponse,
    responses=error_responses(401, 422),
    operation_id="login",
)
async def login(
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    username: Annotated[FormText, Form(min_length=1, max_length=255, examples=["jane.doe"])],
    password: Annotated[
        FormText, Form(min_length=1, max_length=1024, examples=["correct horse battery"])
    ],
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
) -> TokenResponse:
    """Exchange a username and password (OAuth2 password form) for a bearer access token."""
    user = await service.authenticate(session=session, username=username, password=password)
    token = create_access_token(user.id, settings)
    response.headers["Cache-Control"] = "no-store"
    return TokenResponse(access_token=token.token, expires_in=token.expires_in)


@router.post(
    "/register",
    response_model=UserRead,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409, 422),
    operation_id="register",
)
async def register(data: UserCreate, session: SessionDep) -> User:
    """Create a regular (non-admin) account; admins are made by an admin or at start-up."""
    return await service.register_user(session=session, data=data)
