"""The shapes of webhook endpoints and deliveries as they cross the API."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool
from pydantic.config import JsonDict

from app.core.types import PartialUpdate, reject_control_characters
from app.webhooks.models import (
    MAX_DESCRIPTION_LENGTH,
    MAX_URL_LENGTH,
    DeliveryState,
    WebhookDelivery,
    WebhookEndpoint,
)

# Endpoints at once: enough for every system a company connects, and a bound on the fan-out.
MAX_ENDPOINTS = 50


class EventType(StrEnum):
    """The change feed's event types (app.changes.events.ChangeType)."""

    created = "employee.created"
    updated = "employee.updated"
    deleted = "employee.deleted"


def event_types_text(types: list[EventType]) -> str:
    """As stored: space-separated, in the enum's order."""
    chosen = set(types)
    return " ".join(kind.value for kind in EventType if kind in chosen)


def event_types_of(text: str) -> list[EventType]:
    return [EventType(kind) for kind in text.split()]


def _each_once(types: list[EventType]) -> list[EventType]:
    if len(set(types)) != len(types):
        raise ValueError("must not name an event type twice")
    return types


def _plain_url(value: str) -> str:
    return reject_control_characters(value).strip()


Url = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description="Where deliveries are POSTed: https:// (http:// only with "
        "WEBHOOK_ALLOW_HTTP), resolving to a public address; no credentials in it.",
    ),
    AfterValidator(_plain_url),
]
EventTypes = Annotated[
    list[EventType],
    Field(min_length=1, max_length=len(EventType), description="Each at most once."),
    AfterValidator(_each_once),
]
Description = Annotated[
    str, Field(max_length=MAX_DESCRIPTION_LENGTH), AfterValidator(reject_control_characters)
]

CREATE_EXAMPLE: JsonDict = {
    "url": "https://payroll.example.com/hooks/employees",
    "event_types": ["employee.created", "employee.updated", "employee.deleted"],
    "description": "payroll sync",
}


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [CREATE_EXAMPLE]})

    url: Url
    event_types: EventTypes
    description: Description = ""


class WebhookUpdate(PartialUpdate):
    """Only the fields sent change; `active: true` also resumes an endpoint deactivated after
    failing, from where it stopped."""

    model_config = ConfigDict(  # type: ignore[assignment]
        extra="forbid",
        json_schema_extra={"examples": [{"active": True}, {"url": CREATE_EXAMPLE["url"]}]},
    )

    url: Url | None = None
    event_types: EventTypes | None = None
    description: Description | None = None
    active: StrictBool | None = None


ENDPOINT_ID = "3f2b8c1e-5d4a-4e7b-9c6f-1a2b3c4d5e6f"
READ_EXAMPLE: JsonDict = {
    "id": ENDPOINT_ID,
    "url": "https://payroll.example.com/hooks/employees",
    "event_types": ["employee.created", "employee.updated", "employee.deleted"],
    "description": "payroll sync",
    "active": True,
    "failing_since": None,
    "disabled_at": None,
    "created_at": "2026-12-04T09:30:00Z",
    "updated_at": "2026-12-04T09:30:00Z",
}


class WebhookRead(BaseModel):
    """An endpoint as administrators see it: never its secret."""

    model_config = ConfigDict(json_schema_extra={"examples": [READ_EXAMPLE]})

    id: uuid.UUID
    url: str
    event_types: list[EventType]
    description: str
    active: bool
    failing_since: datetime | None = Field(
        description="Since when every delivery attempt has failed; null after a success."
    )
    disabled_at: datetime | None = Field(
        description="When it was deactivated for failing too long; null otherwise."
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> "WebhookRead":
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            event_types=event_types_of(endpoint.event_types),
            description=endpoint.description,
            active=endpoint.active,
            failing_since=endpoint.failing_since,
            disabled_at=endpoint.disabled_at,
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
        )


SECRET_EXAMPLE = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105 (an example)


class WebhookCreated(WebhookRead):
    """A new endpoint, or one whose secret was just rotated: the only answers with the secret."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [READ_EXAMPLE | {"secret": SECRET_EXAMPLE}]}
    )

    secret: str = Field(
        description="The signing secret (Standard Webhooks: `whsec_` + base64): verify each "
        "delivery's `webhook-signature` with it. Shown this once."
    )


class DeliveryRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 1207,
                    "webhook_id": "msg_1207",
                    "event_id": "MTIzNDU2Ojc4OQ",
                    "event_type": "employee.updated",
                    "state": "pending",
                    "attempts": 2,
                    "last_status": 503,
                    "last_error": "HTTP 503",
                    "last_attempt_at": "2026-12-04T09:31:10Z",
                    "next_attempt_at": "2026-12-04T09:35:10Z",
                    "delivered_at": None,
                    "created_at": "2026-12-04T09:30:55Z",
                }
            ]
        }
    )

    id: int
    webhook_id: str = Field(description="The `webhook-id` header: the same on every attempt.")
    event_id: str = Field(description="The change feed's event id.")
    event_type: EventType
    state: DeliveryState
    attempts: int
    last_status: int | None = Field(description="The HTTP status of the last attempt, if any.")
    last_error: str | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None = Field(description="When it is tried next, while pending.")
    delivered_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, delivery: WebhookDelivery) -> "DeliveryRead":
        assert delivery.id is not None
        pending = delivery.state == DeliveryState.pending
        return cls(
            id=delivery.id,
            webhook_id=webhook_message_id(delivery.id),
            event_id=delivery.event_id,
            event_type=EventType(delivery.event_type),
            state=DeliveryState(delivery.state),
            attempts=delivery.attempts,
            last_status=delivery.last_status,
            last_error=delivery.last_error,
            last_attempt_at=delivery.last_attempt_at,
            next_attempt_at=delivery.next_attempt_at if pending else None,
            delivered_at=delivery.delivered_at,
            created_at=delivery.created_at,
        )


def webhook_message_id(delivery_id: int) -> str:
    """The `webhook-id` of a delivery: one per event and endpoint, the same on every attempt."""
    return f"msg_{delivery_id}"
