"""API keys: issue one (shown once), list an account's, revoke one; and the account events
they make. The SQL is `crud`'s."""

import uuid
from datetime import timedelta
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.access import Principal
from app.accounts.keys import crud
from app.accounts.keys.models import (
    MAX_LIVE_KEYS,
    ApiKey,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    scopes_text,
)
from app.core.errors import NotFoundError
from app.core.types import utc_now
from app.security.api_keys import create_api_key

KEY_NOT_FOUND = "API key not found"


class KeyEvent(StrEnum):
    created = "api_key.created"
    revoked = "api_key.revoked"


async def record_key_event(
    *,
    session: AsyncSession,
    event: KeyEvent,
    actor: Principal,
    owner_id: uuid.UUID,
    key_id: uuid.UUID,
) -> None:
    """The one call site of the account audit trail for key events, in the caller's transaction
    before its commit. The trail's table and crud function come with the account roles
    (branch `roles`); until then nothing is recorded here."""


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
    await record_key_event(
        session=session, event=KeyEvent.created, actor=owner, owner_id=owner.id, key_id=key.id
    )
    await session.commit()
    return ApiKeyCreated(**ApiKeyRead.of(key).model_dump(), key=issued.key)


async def list_keys(*, session: AsyncSession, owner_id: uuid.UUID) -> list[ApiKeyRead]:
    """The account's keys, oldest first: expired ones too, until the account's next new key."""
    keys = await crud.list_api_keys(session=session, user_id=owner_id)
    return [ApiKeyRead.of(key) for key in keys]


async def revoke_key(
    *, session: AsyncSession, actor: Principal, owner_id: uuid.UUID, key_id: uuid.UUID
) -> None:
    """Delete one of the account's keys (404 if it has none of that id, another's included);
    requests with it are refused from then on."""
    if not await crud.delete_api_key(session=session, user_id=owner_id, key_id=key_id):
        await session.rollback()
        raise NotFoundError(KEY_NOT_FOUND)
    await record_key_event(
        session=session, event=KeyEvent.revoked, actor=actor, owner_id=owner_id, key_id=key_id
    )
    await session.commit()
