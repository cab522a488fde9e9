"""All SQL that touches API keys, and the account lookup of a request that presents one."""

import uuid
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Join,
    Label,
    Table,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.accounts.crud import ACCESS_COLUMNS, Access, lock_user, user_table
from app.accounts.keys.models import ApiKey
from app.core.errors import ConflictError, NotFoundError
from app.db.reader import Reader
from app.db.statements import Query
from app.security.api_keys import LAST_USED_INTERVAL

api_key_table = cast(Table, ApiKey.__table__)  # type: ignore[attr-defined]
TOO_MANY = "This account holds {limit} live API keys, the most it may; revoke one first"


class ApiKeyRow(NamedTuple):
    """What authorizing a request needs of the key it presents."""

    id: uuid.UUID
    scopes: str
    expires_at: datetime
    last_used_at: datetime | None


class KeyAccess(NamedTuple):
    """The account a key belongs to, as a signed-in request reads it, and the key."""

    account: Access
    key: ApiKeyRow


KEY_COLUMNS = ApiKeyRow._fields
# A key's account and the key, in this order, labelled apart from whatever is read beside them.
key_access_columns: list[Label[Any]] = [
    *(user_table.c[name].label(f"account_{name}") for name in ACCESS_COLUMNS),
    *(api_key_table.c[name].label(f"key_{name}") for name in KEY_COLUMNS),
]


def key_and_account() -> Join:
    return api_key_table.join(user_table, user_table.c.id == api_key_table.c.user_id)


def presented_key() -> ColumnElement[bool]:
    """The key whose digest the request presents: one row through the unique index."""
    return api_key_table.c.key_hash == bindparam("key_hash")


def key_access(values: Any) -> KeyAccess:
    width = len(ACCESS_COLUMNS)
    # A key is no sign-in: `signed_in` is the tokens' (admitting a key never reads it).
    account = Access._make([*values[:width], False])
    return KeyAccess(account, ApiKeyRow._make(values[width:]))


_KEY_ACCESS = Query(
    select(*key_access_columns).select_from(key_and_account()).where(presented_key()), key_access
)


async def get_key_access(*, reader: Reader, key_hash: str) -> KeyAccess | None:
    """The key with this digest and its account, in one statement (none if either is gone)."""
    return await reader.first(_KEY_ACCESS, key_hash=key_hash)


async def list_api_keys(*, session: AsyncSession, user_id: uuid.UUID) -> list[ApiKey]:
    statement = (
        select(ApiKey)
        .where(col(ApiKey.user_id) == user_id)
        .order_by(col(ApiKey.created_at), col(ApiKey.id))
    )
    return list((await session.execute(statement)).scalars())


async def add_api_key(*, session: AsyncSession, key: ApiKey, now: datetime, limit: int) -> None:
    """Add the key to the session's transaction (the caller commits), after deleting the
    account's expired keys; refuse (409) if the account already holds `limit` live ones. The
    account row is locked first, so two requests at once cannot both take the last place."""
    if await lock_user(session=session, user_id=key.user_id) is None:
        await session.rollback()
        raise NotFoundError("User not found")
    mine = col(ApiKey.user_id) == key.user_id
    await session.execute(delete(ApiKey).where(mine, col(ApiKey.expires_at) <= now))
    count = select(func.count()).select_from(ApiKey).where(mine)
    live = (await session.execute(count)).scalar_one()
    if live >= limit:
        await session.rollback()
        raise ConflictError(TOO_MANY.format(limit=limit))
    session.add(key)


class DeletedKey(NamedTuple):
    name: str
    scopes: str


async def delete_api_key(
    *, session: AsyncSession, user_id: uuid.UUID, key_id: uuid.UUID
) -> DeletedKey | None:
    """Delete the account's key in the session's transaction (no commit): what it was, or None
    when the account has no key of that id."""
    statement = (
        delete(ApiKey)
        .where(col(ApiKey.id) == key_id, col(ApiKey.user_id) == user_id)
        .returning(col(ApiKey.name), col(ApiKey.scopes))
    )
    deleted = (await session.execute(statement)).first()
    return None if deleted is None else DeletedKey._make(deleted)


async def delete_account_api_keys(*, session: AsyncSession, user_id: uuid.UUID) -> int:
    """Delete every key of the account in the session's transaction (no commit); how many."""
    statement = delete(ApiKey).where(col(ApiKey.user_id) == user_id)
    result = cast(CursorResult[Any], await session.execute(statement))
    return int(result.rowcount)


async def delete_expired_api_keys(*, session: AsyncSession, now: datetime) -> int:
    """Every account's expired keys (making a key deletes only its own account's); how many.
    Commits."""
    statement = delete(ApiKey).where(col(ApiKey.expires_at) <= now)
    result = cast(CursorResult[Any], await session.execute(statement))
    await session.commit()
    return int(result.rowcount)


async def touch_api_key(*, session: AsyncSession, key_id: uuid.UUID, now: datetime) -> bool:
    """Write the key's last use, unless it was written within the interval (by any worker);
    commit. Whether a row was written."""
    last_used = col(ApiKey.last_used_at)
    statement = (
        update(ApiKey)
        .where(
            col(ApiKey.id) == key_id,
            or_(last_used.is_(None), last_used < now - LAST_USED_INTERVAL),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    result = cast(CursorResult[Any], await session.execute(statement))
    await session.commit()
    return bool(result.rowcount)
