"""Idempotency keys: look up a stored answer, or store one in the transaction that earned it."""

import hashlib
import json
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Any, cast

from sqlalchemy import CursorResult, Table, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InvalidInputError, RetryLaterError
from app.core.types import utc_now
from app.db.statements import insert_or_skip
from app.idempotency.models import IdempotencyKey, StoredResponse

key_table = cast(Table, IdempotencyKey.__table__)  # type: ignore[attr-defined]


class IdempotencyKeyReusedError(InvalidInputError):
    code = "idempotency_key_reused"


class IdempotencyKeyInUseError(RetryLaterError):
    """The key's first request has not finished yet (409 with `Retry-After`)."""

    status_code = HTTPStatus.CONFLICT
    code = "idempotency_key_in_use"


def fingerprint(operation: str, body: Any) -> str:
    """A digest of what was asked: the operation and the validated body, key order ignored."""
    canonical = json.dumps([operation, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def get_stored_response(
    *, session: AsyncSession, user_id: uuid.UUID, key: str, request_hash: str
) -> StoredResponse | None:
    """The answer already given for this key, if it has not expired."""
    statement = select(IdempotencyKey).where(
        key_table.c.user_id == user_id,
        key_table.c.key == key,
        key_table.c.expires_at > utc_now(),
    )
    stored = (await session.execute(statement)).scalar_one_or_none()
    if stored is None:
        return None
    if stored.request_hash != request_hash:
        raise IdempotencyKeyReusedError(
            "This Idempotency-Key was already used with a different request; use a new key",
            loc=("header", "idempotency-key"),
        )
    response = StoredResponse(stored.status_code, stored.response_body, stored.response_headers)
    return replace(response, replayed=True)


async def claim_key(
    *,
    session: AsyncSession,
    user_id: uuid.UUID,
    key: str,
    request_hash: str,
    response: StoredResponse,
    ttl: timedelta,
) -> bool:
    """Store the answer under the key in the session's transaction, unless the key is taken
    (False, rolled back). Claimed before the write: a concurrent request with the key waits for
    the first to commit, then finds its answer. The caller's expired keys are deleted first."""
    now = utc_now()
    await session.execute(
        delete(key_table).where(key_table.c.user_id == user_id, key_table.c.expires_at <= now)
    )
    statement = insert_or_skip(session, key_table).values(
        user_id=user_id,
        key=key,
        request_hash=request_hash,
        status_code=response.status_code,
        response_body=response.body,
        response_headers=response.headers,
        created_at=now,
        expires_at=now + ttl,
    )
    result = cast(CursorResult[Any], await session.execute(statement))
    if result.rowcount != 1:
        await session.rollback()
        return False
    return True


async def delete_expired_keys(*, session: AsyncSession, now: datetime) -> int:
    """Every account's expired keys (a write deletes only its own caller's); how many."""
    statement = delete(key_table).where(key_table.c.expires_at <= now)
    result = cast(CursorResult[Any], await session.execute(statement))
    await session.commit()
    return int(result.rowcount)
