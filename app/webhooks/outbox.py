"""The worker's SQL: fan the change feed out into deliveries, claim due deliveries, record how an
attempt went. Rows are claimed with `FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite has one writer
at a time anyway), so several workers and replicas share the work."""

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, exists, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from app.changes.crud import read_changes
from app.changes.events import Change, EventPosition, feed_item
from app.webhooks.models import MAX_ERROR_LENGTH, DeliveryState, WebhookDelivery, WebhookEndpoint

PENDING = DeliveryState.pending.value


def payload(change: Change) -> str:
    """The body of every delivery of this event (Standard Webhooks: type, timestamp, data)."""
    item = feed_item(change)
    body = {"type": change.type, "timestamp": item["occurred_at"], "data": item}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


async def fan_out(*, session: AsyncSession, batch: int) -> int:
    """Turn the feed events after each active endpoint's position into its deliveries and move
    the position on, in one transaction: an event is queued once, and only once committed
    (the feed holds nothing else). Endpoints another worker is fanning out are skipped. Returns
    the number of events read."""
    statement = (
        select(WebhookEndpoint)
        .where(col(WebhookEndpoint.active))
        .order_by(col(WebhookEndpoint.id))
        .with_for_update(skip_locked=True)
    )
    endpoints = list((await session.execute(statement)).scalars())
    read: dict[EventPosition | None, list[Change]] = {}
    count = 0
    for endpoint in endpoints:
        after = None
        if endpoint.position_tx is not None and endpoint.position_id is not None:
            after = EventPosition(endpoint.position_tx, endpoint.position_id)
        if after not in read:  # endpoints at the same place read the feed once
            read[after] = await read_changes(session=session, after=after, limit=batch)
        changes = read[after]
        if not changes:
            continue
        wanted = set(endpoint.event_types.split())
        session.add_all(
            WebhookDelivery(
                endpoint_id=endpoint.id,
                event_id=change.event_id,
                event_tx=change.position.tx,
                event_seq=change.position.id,
                event_type=change.type,
                employee_id=change.employee_id,
                payload=payload(change),
            )
            for change in changes
            if change.type in wanted
        )
        endpoint.position_tx, endpoint.position_id = changes[-1].position
        count += len(changes)
    await session.commit()
    return count


@dataclass(frozen=True)
class Claimed:
    """A delivery a worker holds for the lease: what sending it needs."""

    id: int
    endpoint_id: uuid.UUID
    url: str
    secrets: tuple[str, ...]
    payload: str
    attempt: int  # this attempt's number, also the claim's token


async def claim_due(
    *, session: AsyncSession, now: datetime, lease: timedelta, limit: int
) -> list[Claimed]:
    """Take up to `limit` due deliveries of active endpoints, each the earliest pending one of
    its employee at its endpoint (so each employee's events arrive in order), and hold them for
    `lease`; commit. Rows other workers are claiming are skipped, not waited for."""
    delivery, endpoint = WebhookDelivery, WebhookEndpoint
    earlier = aliased(WebhookDelivery)
    blocked = exists().where(
        col(earlier.endpoint_id) == col(delivery.endpoint_id),
        col(earlier.employee_id) == col(delivery.employee_id),
        col(earlier.state) == PENDING,
        tuple_(col(earlier.event_tx), col(earlier.event_seq))
        < tuple_(col(delivery.event_tx), col(delivery.event_seq)),
    )
    statement = (
        select(delivery, endpoint)
        .join(endpoint, col(endpoint.id) == col(delivery.endpoint_id))
        .where(
            col(endpoint.active),
            col(delivery.state) == PENDING,
            col(delivery.next_attempt_at) <= now,
            or_(col(delivery.locked_until).is_(None), col(delivery.locked_until) <= now),
            ~blocked,
        )
        .order_by(col(delivery.next_attempt_at), col(delivery.id))
        .limit(limit)
        .with_for_update(of=delivery, skip_locked=True)
    )
    rows = (await session.execute(statement)).all()
    claimed = []
    for row, owner in rows:
        assert row.id is not None
        row.attempts += 1
        row.locked_until = now + lease
        secrets = [owner.secret]
        expires = owner.previous_secret_expires_at
        if owner.previous_secret is not None and expires is not None and expires > now:
            secrets.append(owner.previous_secret)
        claimed.append(
            Claimed(row.id, owner.id, owner.url, tuple(secrets), row.payload, row.attempts)
        )
    await session.commit()
    return claimed


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int | None = None
    error: str | None = None


async def record_attempt(
    *,
    session: AsyncSession,
    claimed: Claimed,
    outcome: Outcome,
    now: datetime,
    retry_at: datetime | None,
    disable_after: timedelta,
) -> bool:
    """Write how the attempt went and release the claim; commit. `retry_at` None: no attempt
    is left, the delivery failed. A success clears the endpoint's failing streak; a failure
    starts it, and one that has lasted `disable_after` deactivates the endpoint. Nothing is
    written if the claim was lost meanwhile (its lease ran out and another worker took it).
    Whether the endpoint was deactivated."""
    values: dict[str, Any] = {
        "locked_until": None,
        "last_attempt_at": now,
        "last_status": outcome.status,
        "last_error": None if outcome.error is None else outcome.error[:MAX_ERROR_LENGTH],
    }
    if outcome.ok:
        values |= {"state": DeliveryState.delivered.value, "delivered_at": now}
    elif retry_at is None:
        values |= {"state": DeliveryState.failed.value}
    else:
        values |= {"next_attempt_at": retry_at}
    statement = (
        update(WebhookDelivery)
        .where(
            col(WebhookDelivery.id) == claimed.id,
            col(WebhookDelivery.attempts) == claimed.attempt,
            col(WebhookDelivery.state) == PENDING,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    await session.execute(statement)
    deactivated = await _note_endpoint_health(
        session, claimed.endpoint_id, outcome.ok, now, disable_after
    )
    await session.commit()
    return deactivated


async def _note_endpoint_health(
    session: AsyncSession, endpoint_id: uuid.UUID, ok: bool, now: datetime, after: timedelta
) -> bool:
    """Whether this outcome deactivated the endpoint."""
    endpoint = await session.get(WebhookEndpoint, endpoint_id, with_for_update=True)
    if endpoint is None:
        return False
    if ok:
        endpoint.failing_since = None
        return False
    if endpoint.failing_since is None:
        endpoint.failing_since = now
    elif endpoint.active and now - endpoint.failing_since >= after:
        endpoint.active = False
        endpoint.disabled_at = now
        endpoint.updated_at = now
        return True
    return False


async def delete_settled(*, session: AsyncSession, before: datetime) -> int:
    """Delete the delivered and failed deliveries made before `before`; commit. How many."""
    statement = delete(WebhookDelivery).where(
        col(WebhookDelivery.state) != PENDING, col(WebhookDelivery.created_at) < before
    )
    result = cast(CursorResult[Any], await session.execute(statement))
    await session.commit()
    return int(result.rowcount)
