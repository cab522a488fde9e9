"""API key endpoints: a signed-in person's own keys, and any account's for administrators. No API
key may call them (the router refuses one before anything else)."""

import uuid
from typing import Annotated

from fastapi import Path, status

from app.accounts.dependencies import AdminUser, SignedIn, keyless_router
from app.accounts.keys import service
from app.accounts.keys.models import MAX_LIVE_KEYS, ApiKeyCreate, ApiKeyCreated, ApiKeyRead
from app.accounts.users_router import USER_PATH, UserDep
from app.db.session import ReadSessionDep, SessionDep
from app.http.openapi import error_responses

router = keyless_router("/users", "users")

KeyIdPath = Annotated[uuid.UUID, Path(description="The key's id (a UUID, from the list).")]
CREATE_ERRORS = error_responses(401, 403, 409, 422)
CREATE_ERRORS[409] = CREATE_ERRORS[409] | {
    "description": f"The account already holds {MAX_LIVE_KEYS} live keys; revoke one first."
}


@router.post(
    "/me/api-keys",
    response_model=ApiKeyCreated,
    status_code=status.HTTP_201_CREATED,
    responses=CREATE_ERRORS,
    operation_id="create_api_key",
)
async def create_api_key(owner: SignedIn, data: ApiKeyCreate, session: SessionDep) -> ApiKeyCreated:
    """Create an API key for a program: the key is in this answer only, never shown again.

    Send it as `Authorization: Bearer erk_...` to the employee operations. On each request it
    may do what its scopes name and its owner's role allows at that moment.
    """
    return await service.create_key(session=session, owner=owner, data=data)


@router.get(
    "/me/api-keys",
    response_model=list[ApiKeyRead],
    responses=error_responses(401, 403),
    operation_id="list_api_keys",
)
async def list_api_keys(owner: SignedIn, session: ReadSessionDep) -> list[ApiKeyRead]:
    """The caller's API keys, oldest first: name, prefix, scopes, dates; never the key."""
    return await service.list_keys(session=session, owner_id=owner.id)


@router.delete(
    "/me/api-keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 403, 404, 422),
    operation_id="revoke_api_key",
)
async def revoke_api_key(owner: SignedIn, key_id: KeyIdPath, session: SessionDep) -> None:
    """Revoke one of the caller's API keys, at once."""
    await service.revoke_key(
        session=session,
        actor=owner,
        owner_id=owner.id,
        owner_username=owner.username,
        key_id=key_id,
    )


@router.get(
    USER_PATH + "/api-keys",
    response_model=list[ApiKeyRead],
    responses=error_responses(401, 403, 404, 422),
    operation_id="list_user_api_keys",
)
async def list_user_api_keys(_: AdminUser, user: UserDep, session: SessionDep) -> list[ApiKeyRead]:
    """An account's API keys, oldest first (admin only); never the keys themselves."""
    return await service.list_keys(session=session, owner_id=user.id)


@router.delete(
    USER_PATH + "/api-keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 403, 404, 422),
    operation_id="revoke_user_api_key",
)
async def revoke_user_api_key(
    admin: AdminUser, user: UserDep, key_id: KeyIdPath, session: SessionDep
) -> None:
    """Revoke one of an account's API keys (admin only), at once."""
    await service.revoke_key(
        session=session,
        actor=admin,
        owner_id=user.id,
        owner_username=user.username,
        key_id=key_id,
    )
