"""Webhook endpoints (administrators only, never with an API key): register, list, read,
change, delete, rotate the secret; list and retry an endpoint's deliveries."""

import uuid
from typing import Annotated, Any

from fastapi import Path, Request, Response, status

from app.accounts.dependencies import AdminUser, keyless_router
from app.core.config import SettingsDep
from app.db.session import SessionDep
from app.http.openapi import PAGE_HEADERS, error_responses, headers
from app.http.pagination import PageDep, set_page_headers
from app.webhooks import service
from app.webhooks.schemas import (
    MAX_ENDPOINTS,
    DeliveryRead,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
    WebhookUpdate,
)

router = keyless_router("/webhooks", "webhooks")

EndpointIdPath = Annotated[uuid.UUID, Path(description="The endpoint's id (a UUID).")]
DeliveryIdPath = Annotated[
    int, Path(ge=1, le=2**63 - 1, description="The delivery's id (from the deliveries list).")
]
PAGE: dict[int | str, dict[str, Any]] = {200: {"headers": headers(*PAGE_HEADERS)}}
CREATE_ERRORS = error_responses(401, 403, 409, 422)
CREATE_ERRORS[409] = CREATE_ERRORS[409] | {
    "description": f"There are {MAX_ENDPOINTS} endpoints already; delete one first."
}
RETRY_ERRORS = error_responses(401, 403, 404, 409, 422)
RETRY_ERRORS[409] = RETRY_ERRORS[409] | {"description": "An attempt is under way right now."}


@router.post(
    "/",
    response_model=WebhookCreated,
    status_code=status.HTTP_201_CREATED,
    responses=CREATE_ERRORS,
    operation_id="create_webhook",
)
async def create_webhook(
    _: AdminUser, data: WebhookCreate, session: SessionDep, settings: SettingsDep
) -> WebhookCreated:
    """Register an endpoint: every matching change committed from now on is POSTed to it,
    signed (Standard Webhooks). The signing secret is in this answer only."""
    return await service.create_endpoint(session=session, settings=settings, data=data)


@router.get(
    "/",
    response_model=list[WebhookRead],
    responses={**PAGE, **error_responses(401, 403, 422)},
    operation_id="list_webhooks",
)
async def list_webhooks(
    _: AdminUser, session: SessionDep, page: PageDep, request: Request, response: Response
) -> list[WebhookRead]:
    """Every endpoint, oldest first; paginated. Never the secrets."""
    endpoints, total = await service.list_endpoints(session=session, page=page)
    set_page_headers(request, response, page, total)
    return endpoints


@router.get(
    "/{endpoint_id}",
    response_model=WebhookRead,
    responses=error_responses(401, 403, 404, 422),
    operation_id="read_webhook",
)
async def read_webhook(
    _: AdminUser, endpoint_id: EndpointIdPath, session: SessionDep
) -> WebhookRead:
    """One endpoint: `active` false once deactivated, by an administrator or for failing."""
    return WebhookRead.of(await service.get_endpoint(session=session, endpoint_id=endpoint_id))


@router.patch(
    "/{endpoint_id}",
    response_model=WebhookRead,
    responses=error_responses(401, 403, 404, 422),
    operation_id="update_webhook",
)
async def update_webhook(
    _: AdminUser,
    endpoint_id: EndpointIdPath,
    data: WebhookUpdate,
    session: SessionDep,
    settings: SettingsDep,
) -> WebhookRead:
    """Change an endpoint's URL, event types, description or `active`."""
    return await service.update_endpoint(
        session=session, settings=settings, endpoint_id=endpoint_id, data=data
    )


@router.delete(
    "/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 403, 404, 422),
    operation_id="delete_webhook",
)
async def delete_webhook(_: AdminUser, endpoint_id: EndpointIdPath, session: SessionDep) -> None:
    """Delete an endpoint and its deliveries, sent or not."""
    await service.delete_endpoint(session=session, endpoint_id=endpoint_id)


@router.post(
    "/{endpoint_id}/rotate-secret",
    response_model=WebhookCreated,
    responses=error_responses(401, 403, 404, 422),
    operation_id="rotate_webhook_secret",
)
async def rotate_webhook_secret(
    _: AdminUser, endpoint_id: EndpointIdPath, session: SessionDep
) -> WebhookCreated:
    """A new signing secret, in this answer only; for 24 hours deliveries carry a signature
    made with the previous one as well."""
    return await service.rotate_secret(session=session, endpoint_id=endpoint_id)


@router.get(
    "/{endpoint_id}/deliveries",
    response_model=list[DeliveryRead],
    responses={**PAGE, **error_responses(401, 403, 404, 422)},
    operation_id="list_webhook_deliveries",
)
async def list_webhook_deliveries(
    _: AdminUser,
    endpoint_id: EndpointIdPath,
    session: SessionDep,
    page: PageDep,
    request: Request,
    response: Response,
) -> list[DeliveryRead]:
    """The endpoint's deliveries, newest first: state, attempts, last status, next attempt."""
    deliveries, total = await service.list_deliveries(
        session=session, endpoint_id=endpoint_id, page=page
    )
    set_page_headers(request, response, page, total)
    return deliveries


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/retry",
    response_model=DeliveryRead,
    status_code=status.HTTP_202_ACCEPTED,
    responses=RETRY_ERRORS,
    operation_id="retry_webhook_delivery",
)
async def retry_webhook_delivery(
    _: AdminUser, endpoint_id: EndpointIdPath, delivery_id: DeliveryIdPath, session: SessionDep
) -> DeliveryRead:
    """Send a delivery again as soon as the worker can, with a fresh set of attempts."""
    return await service.retry_delivery(
        session=session, endpoint_id=endpoint_id, delivery_id=delivery_id
    )
