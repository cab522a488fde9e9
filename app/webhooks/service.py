"""Webhook endpoints as administrators manage them: register (the URL checked against the SSRF
rules, the secret shown once), change, rotate the secret, delete; read and retry deliveries.
The SQL is `crud`'s."""

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.changes.crud import current_position
from app.core.config import Settings
from app.core.errors import ConflictError, InvalidInputError, NotFoundError
from app.core.types import utc_now
from app.http.pagination import Page
from app.webhooks import crud
from app.webhooks.models import DeliveryState, WebhookEndpoint
from app.webhooks.schemas import (
    MAX_ENDPOINTS,
    DeliveryRead,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
    WebhookUpdate,
    event_types_text,
)
from app.webhooks.signing import new_secret
from app.webhooks.targets import TargetRefusedError, check_target

ENDPOINT_NOT_FOUND = "Webhook endpoint not found"
DELIVERY_NOT_FOUND = "Delivery not found"
# After a rotation the previous secret signs too for this long, while receivers switch.
PREVIOUS_SECRET_GRACE = timedelta(hours=24)


async def checked_url(url: str, settings: Settings) -> str:
    """The URL if deliveries may go there (422 on `url` otherwise)."""
    try:
        await check_target(
            url,
            allow_http=settings.webhook_allow_http,
            allow_private=settings.webhook_allow_private_targets,
            resolve_seconds=settings.webhook_timeout_seconds,
        )
    except TargetRefusedError as error:
        raise InvalidInputError(f"url {error}", loc=("body", "url")) from None
    return url


async def create_endpoint(
    *, session: AsyncSession, settings: Settings, data: WebhookCreate
) -> WebhookCreated:
    """A new endpoint, sent every matching change committed from now on."""
    url = await checked_url(data.url, settings)
    start = await current_position(session=session)
    endpoint = WebhookEndpoint(
        url=url,
        description=data.description,
        event_types=event_types_text(data.event_types),
        secret=new_secret(),
        position_tx=None if start is None else start.tx,
        position_id=None if start is None else start.id,
    )
    await crud.add_endpoint(session=session, endpoint=endpoint, limit=MAX_ENDPOINTS)
    return WebhookCreated(**WebhookRead.of(endpoint).model_dump(), secret=endpoint.secret)


async def list_endpoints(*, session: AsyncSession, page: Page) -> tuple[list[WebhookRead], int]:
    total = await crud.count_endpoints(session=session)
    found = await crud.list_endpoints(session=session, offset=page.offset, limit=page.limit)
    return [WebhookRead.of(endpoint) for endpoint in found], total


async def get_endpoint(
    *, session: AsyncSession, endpoint_id: uuid.UUID, for_update: bool = False
) -> WebhookEndpoint:
    endpoint = await crud.get_endpoint(
        session=session, endpoint_id=endpoint_id, for_update=for_update
    )
    if endpoint is None:
        await session.rollback()
        raise NotFoundError(ENDPOINT_NOT_FOUND)
    return endpoint


async def update_endpoint(
    *, session: AsyncSession, settings: Settings, endpoint_id: uuid.UUID, data: WebhookUpdate
) -> WebhookRead:
    """Change what was sent; `active: true` resumes a deactivated endpoint where it stopped."""
    changes = data.model_dump(exclude_unset=True)
    if "url" in changes:
        changes["url"] = await checked_url(changes["url"], settings)
    if "event_types" in changes:
        changes["event_types"] = event_types_text(changes["event_types"])
    endpoint = await get_endpoint(session=session, endpoint_id=endpoint_id, for_update=True)
    if changes.get("active") and not endpoint.active:
        endpoint.failing_since = endpoint.disabled_at = None
    for name, value in changes.items():
        setattr(endpoint, name, value)
    endpoint.updated_at = utc_now()
    await session.commit()
    return WebhookRead.of(endpoint)


async def rotate_secret(*, session: AsyncSession, endpoint_id: uuid.UUID) -> WebhookCreated:
    """A new secret; deliveries carry a signature with the previous one too for a day."""
    endpoint = await get_endpoint(session=session, endpoint_id=endpoint_id, for_update=True)
    now = utc_now()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + PREVIOUS_SECRET_GRACE
    endpoint.secret = new_secret()
    endpoint.updated_at = now
    await session.commit()
    return WebhookCreated(**WebhookRead.of(endpoint).model_dump(), secret=endpoint.secret)


async def delete_endpoint(*, session: AsyncSession, endpoint_id: uuid.UUID) -> None:
    if not await crud.delete_endpoint(session=session, endpoint_id=endpoint_id):
        raise NotFoundError(ENDPOINT_NOT_FOUND)


async def list_deliveries(
    *, session: AsyncSession, endpoint_id: uuid.UUID, page: Page
) -> tuple[list[DeliveryRead], int]:
    await get_endpoint(session=session, endpoint_id=endpoint_id)
    total = await crud.count_deliveries(session=session, endpoint_id=endpoint_id)
    found = await crud.list_deliveries(
        session=session, endpoint_id=endpoint_id, offset=page.offset, limit=page.limit
    )
    return [DeliveryRead.of(delivery) for delivery in found], total


async def retry_delivery(
    *, session: AsyncSession, endpoint_id: uuid.UUID, delivery_id: int
) -> DeliveryRead:
    """Send the delivery again now, with a fresh set of attempts (409 while one is under way)."""
    delivery = await crud.get_delivery(
        session=session, endpoint_id=endpoint_id, delivery_id=delivery_id, for_update=True
    )
    if delivery is None:
        await session.rollback()
        raise NotFoundError(DELIVERY_NOT_FOUND)
    now = utc_now()
    if delivery.locked_until is not None and delivery.locked_until > now:
        await session.rollback()
        raise ConflictError("The delivery is being sent right now; try again in a moment")
    delivery.state = DeliveryState.pending
    delivery.attempts = 0
    delivery.next_attempt_at = now
    await session.commit()
    return DeliveryRead.of(delivery)
