"""The SQL of the webhook admin operations: endpoints and their deliveries as administrators
read and change them. The worker's SQL is app.webhooks.outbox's."""

import uuid
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.core.errors import ConflictError
from app.webhooks.models import WebhookDelivery, WebhookEndpoint

TOO_MANY = "There are {limit} webhook endpoints, the most allowed; delete one first"


async def count_endpoints(*, session: AsyncSession) -> int:
    statement = select(func.count()).select_from(WebhookEndpoint)
    return int((await session.execute(statement)).scalar_one())


async def list_endpoints(
    *, session: AsyncSession, offset: int, limit: int
) -> list[WebhookEndpoint]:
    statement = (
        select(WebhookEndpoint)
        .order_by(col(WebhookEndpoint.created_at), col(WebhookEndpoint.id))
        .offset(offset)
        .limit(limit)
    )
    return list((await session.execute(statement)).scalars())


async def get_endpoint(
    *, session: AsyncSession, endpoint_id: uuid.UUID, for_update: bool = False
) -> WebhookEndpoint | None:
    statement = select(WebhookEndpoint).where(col(WebhookEndpoint.id) == endpoint_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalars().first()


async def add_endpoint(*, session: AsyncSession, endpoint: WebhookEndpoint, limit: int) -> None:
    """Add the endpoint and commit; refuse (409) when `limit` endpoints exist already."""
    if await count_endpoints(session=session) >= limit:
        await session.rollback()
        raise ConflictError(TOO_MANY.format(limit=limit))
    session.add(endpoint)
    await session.commit()


async def delete_endpoint(*, session: AsyncSession, endpoint_id: uuid.UUID) -> bool:
    """Delete the endpoint and its deliveries; commit. Whether it existed."""
    # The deliveries first: SQLite enforces the cascade only with foreign keys on.
    await session.execute(
        delete(WebhookDelivery).where(col(WebhookDelivery.endpoint_id) == endpoint_id)
    )
    statement = delete(WebhookEndpoint).where(col(WebhookEndpoint.id) == endpoint_id)
    result = cast(CursorResult[Any], await session.execute(statement))
    await session.commit()
    return bool(result.rowcount)


async def count_deliveries(*, session: AsyncSession, endpoint_id: uuid.UUID) -> int:
    statement = (
        select(func.count())
        .select_from(WebhookDelivery)
        .where(col(WebhookDelivery.endpoint_id) == endpoint_id)
    )
    return int((await session.execute(statement)).scalar_one())


async def list_deliveries(
    *, session: AsyncSession, endpoint_id: uuid.UUID, offset: int, limit: int
) -> list[WebhookDelivery]:
    """The endpoint's deliveries, newest first."""
    statement = (
        select(WebhookDelivery)
        .where(col(WebhookDelivery.endpoint_id) == endpoint_id)
        .order_by(col(WebhookDelivery.id).desc())
        .offset(offset)
        .limit(limit)
    )
    return list((await session.execute(statement)).scalars())


async def get_delivery(
    *, session: AsyncSession, endpoint_id: uuid.UUID, delivery_id: int, for_update: bool = False
) -> WebhookDelivery | None:
    statement = select(WebhookDelivery).where(
        col(WebhookDelivery.id) == delivery_id, col(WebhookDelivery.endpoint_id) == endpoint_id
    )
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalars().first()
