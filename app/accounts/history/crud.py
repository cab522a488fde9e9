"""All SQL of the account history: events written in the caller's transaction, so a change
that is rolled back leaves none behind."""

import uuid
from typing import Any, cast

from sqlalchemy import Table, exists, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.crud import user_table
from app.accounts.history.models import AccountEvent, EventActor
from app.core.types import utc_now

event_table = cast(Table, AccountEvent.__table__)  # type: ignore[attr-defined]


async def record_account_event(
    *,
    session: AsyncSession,
    account_id: uuid.UUID,
    account_username: str,
    kind: str,
    actor: EventActor,
    changes: dict[str, Any] | None = None,
) -> None:
    """Write one event about an account in the caller's transaction, uncommitted: the caller's
    commit writes it with the change it describes, or neither. `kind` is one of
    `app.accounts.history.kinds`; `changes` maps each field to its `before` and `after`."""
    await session.execute(
        insert(event_table).values(
            account_id=account_id,
            account_username=account_username,
            kind=kind,
            actor_id=actor.user_id,
            actor_username=actor.username,
            request_id=actor.request_id,
            occurred_at=utc_now(),
            changes=changes or {},
        )
    )


async def account_is_known(*, session: AsyncSession, account_id: uuid.UUID) -> bool:
    """Whether the account exists, or has a history (a deleted one has)."""
    account = exists().where(user_table.c.id == account_id)
    event = exists().where(event_table.c.account_id == account_id)
    return bool((await session.execute(select(or_(account, event)))).scalar())


async def list_account_events(
    *, session: AsyncSession, account_id: uuid.UUID, offset: int, limit: int
) -> tuple[list[AccountEvent], int]:
    """An account's events, newest first."""
    condition = event_table.c.account_id == account_id
    count = select(func.count()).select_from(event_table).where(condition)
    total = (await session.execute(count)).scalar_one()
    statement = (
        select(AccountEvent)
        .where(condition)
        .order_by(event_table.c.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return list((await session.execute(statement)).scalars()), total
