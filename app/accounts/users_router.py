"""Account endpoints: the caller's own account, account reads for administrators and auditors,
and account management for administrators."""

import uuid
from typing import Annotated, Any

from fastapi import Depends, Path, Request, Response, status

from app.accounts import crud, service
from app.accounts.dependencies import AccountReader, AdminUser, CurrentUser, keyless_router
from app.accounts.models import User, UserRead, UserUpdate, users_json
from app.core.errors import NotFoundError
from app.db.session import ReadSessionDep, SessionDep
from app.http.openapi import error_responses, page_responses
from app.http.page_tags import PageIfNoneMatch, tagged_page
from app.http.pagination import PageDep, set_page_headers
from app.http.routing import segment_except

# No API key may call these (refused before anything else is read).
router = keyless_router("/users", "users")

UserIdPath = Annotated[uuid.UUID, Path(description="The account's id (a UUID).")]
# Any segment but `me`, whose other methods are then a 405 rather than an invalid id.
USER_PATH = "/{user_id:" + segment_except("account_id", "me") + "}"


async def get_user_or_404(user_id: UserIdPath, session: SessionDep) -> User:
    user = await crud.get_user(session=session, user_id=user_id)
    if user is None:
        raise NotFoundError("User not found")
    return user


UserDep = Annotated[User, Depends(get_user_or_404)]


def last_admin_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    responses = error_responses(*codes, 409)
    description = "The change would leave no active administrator; nothing was changed."
    responses[409] = responses[409] | {"description": description}
    return responses


@router.get(
    "/me", response_model=UserRead, responses=error_responses(401), operation_id="read_current_user"
)
async def read_current_user(user: CurrentUser) -> User:
    """The account the bearer token belongs to."""
    return user


@router.get(
    "/",
    response_model=list[UserRead],
    responses={**page_responses(), **error_responses(401, 403, 422)},
    operation_id="list_users",
)
@router.get("", response_model=list[UserRead], include_in_schema=False)
async def list_users(
    _: AccountReader,
    session: ReadSessionDep,
    page: PageDep,
    request: Request,
    if_none_match: PageIfNoneMatch = None,
) -> Response:
    """All accounts, oldest first (admins and auditors); paginated, and tagged for polling,
    like `/employees/`."""
    users, total = await crud.list_users(session=session, offset=page.offset, limit=page.limit)
    response = Response(users_json(users), media_type="application/json")
    set_page_headers(request, response, page, total)
    return tagged_page(response, if_none_match)


@router.get(
    USER_PATH,
    response_model=UserRead,
    responses=error_responses(401, 403, 404, 422),
    operation_id="read_user",
)
async def read_user(_: AccountReader, user: UserDep) -> User:
    """One account by id (admins and auditors)."""
    return user


@router.patch(
    USER_PATH,
    response_model=UserRead,
    responses=last_admin_responses(401, 403, 404, 422),
    operation_id="update_user",
)
async def update_user(
    admin: AdminUser, user: UserDep, data: UserUpdate, session: SessionDep
) -> User:
    """Change an account's role (`admin`, `auditor`, `user`) or (de)activate it (admin only),
    at once; recorded in the account's history."""
    changes = data.model_dump(exclude_unset=True)
    return await service.update_account(
        session=session, user=user, changes=changes, actor=service.acting(admin)
    )


@router.delete(
    USER_PATH,
    status_code=status.HTTP_204_NO_CONTENT,
    responses=last_admin_responses(401, 403, 404, 422),
    operation_id="delete_user",
)
async def delete_user(admin: AdminUser, user: UserDep, session: SessionDep) -> None:
    """Delete an account (admin only); its tokens stop working at once, its history stays."""
    await service.delete_account(session=session, user=user, actor=service.acting(admin))
