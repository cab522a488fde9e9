"""API keys: issue one (shown once), list an account's, revoke one; each issue and revocation
recorded in the account's history in the same transaction. The SQL is `crud`'s."""

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.access import Principal
from app.accounts.history import crud as history
from app.accounts.history import kinds
from app.accounts.keys import crud
from app.accounts.keys.models import (
    MAX_LIVE_KEYS,
    ApiKey,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    scopes_of,
    scopes_text,
)
from app.accounts.service import acting
from app.core.errors import NotFoundError
from app.core.types import utc_now
from app.security.api_keys import create_api_key

KEY_NOT_FOUND = "API key not found"


def _described(key_id: uuid.UUID, name: str, scopes: str) -> dict[str, Any]:
    """A key as its account's history shows it: never the key, nor its digest."""
    return {"id": str(key_id), "name": name, "scopes": [scope.value for scope in scopes_of(scopes)]}


async def create_key(
    *, session: AsyncSession, owner: Principal, data: ApiKeyCreate
) -> ApiKeyCreated:
    """A new key for the owner's account; the answer is the only place the key ever appears."""
    now = utc_now()
    issued = create_api_key()
    key = ApiKey(
        user_id=owner.id,
        name=data.name,
        prefix=issued.prefix,
        key_hash=issued.key_hash,
        scopes=scopes_text(data.scopes),
        created_at=now,
        expires_at=now + timedelta(days=data.expires_in_days),
    )
    await crud.add_api_key(session=session, key=key, now=now, limit=MAX_LIVE_KEYS)
    await history.record_account_event(
        session=session,
        account_id=owner.id,
        account_username=owner.username,
        kind=kinds.API_KEY_CREATED,
        actor=acting(owner),
        changes={"api_key": {"before": None, "after": _described(key.id, key.name, key.scopes)}},
    )
    await session.commit()
    return ApiKeyCreated(**ApiKeyRead.of(key).model_dump(), key=issued.key)


async def list_keys(*, session: AsyncSession, owner_id: uuid.UUID) -> list[ApiKeyRead]:
    """The account's keys, oldest first: expired ones too, until the account's next new key."""
    keys = await crud.list_api_keys(session=session, user_id=owner_id)
    return [ApiKeyRead.of(key) for key in keys]


async def revoke_key(
    *,
    session: AsyncSession,
    actor: Principal,
    owner_id: uuid.UUID,
    owner_username: str,
    key_id: uuid.UUID,
) -> None:
    """Delete one of the account's keys (404 if it has none of that id, another's included),
    recorded in its history; requests with it are refused from then on."""
    deleted = await crud.delete_api_key(session=session, user_id=owner_id, key_id=key_id)
    if deleted is None:
        await session.rollback()
        raise NotFoundError(KEY_NOT_FOUND)
    await history.record_account_event(
        session=session,
        account_id=owner_id,
        account_username=owner_username,
        kind=kinds.API_KEY_REVOKED,
        actor=acting(actor),
        changes={"api_key": {"before": _described(key_id, *deleted), "after": None}},
    )
    await session.commit()
