"""Account endpoints."""

from fastapi import APIRouter, Request, Response

from app.auth.dependencies import AdminUser, CurrentUser
from app.core.db import SessionDep
from app.core.openapi import error_responses
from app.core.pagination import PageDep, set_page_headers
from app.users import crud
from app.users.models import User, UserRead

router = APIRouter(prefix="/users", tags=["users"])


@router.get(
    "/me", response_model=UserRead, responses=error_responses(401), operation_id="read_current_user"
)
async def read_current_user(user: CurrentUser) -> User:
    """The account the bearer token belongs to."""
    return user


@router.get(
    "/",
    response_model=list[UserRead],
    responses=error_responses(401, 403, 422),
    operation_id="list_users",
)
@router.get("", response_model=list[UserRead], include_in_schema=False)
async def list_users(
    _: AdminUser, session: SessionDep, page: PageDep, request: Request, response: Response
) -> list[User]:
    """All accounts, oldest first (admin only); paginated like `/employees/`."""
    users, total = await crud.list_users(session=session, offset=page.offset, limit=page.limit)
    set_page_headers(request, response, page, total)
    return users
