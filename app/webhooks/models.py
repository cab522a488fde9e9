"""The webhook tables: the endpoints (with their place in the change feed) and the outbox of
deliveries, one row per event and endpoint, retried until delivered or failed."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
)
from sqlmodel import Field, SQLModel

from app.core.types import UTCDateTime, utc_now

MAX_URL_LENGTH = 2000
MAX_DESCRIPTION_LENGTH = 200
MAX_ERROR_LENGTH = 200


class DeliveryState(StrEnum):
    pending = "pending"  # due at next_attempt_at (or being sent, while locked_until is ahead)
    delivered = "delivered"
    failed = "failed"  # every attempt failed: the employee's later deliveries go on


class WebhookEndpoint(SQLModel, table=True):
    __tablename__ = "webhook_endpoint"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid, primary_key=True))
    url: str = Field(sa_column=Column(String(MAX_URL_LENGTH), nullable=False))
    description: str = Field(
        default="", sa_column=Column(String(MAX_DESCRIPTION_LENGTH), nullable=False)
    )
    # Space-separated, in ChangeType's order (app.webhooks.schemas).
    event_types: str = Field(sa_column=Column(String(100), nullable=False))
    # The signing secret must be read back to sign, so it is stored as issued.
    secret: str = Field(sa_column=Column(String(100), nullable=False))
    # After a rotation the previous secret signs too, for a day, while receivers switch.
    previous_secret: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    previous_secret_expires_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime, nullable=True)
    )
    active: bool = Field(default=True, sa_column=Column(Boolean, nullable=False))
    # The last feed event fanned out to this endpoint (app.changes.events.EventPosition).
    position_tx: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    position_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # Since when every attempt has failed (null after a success); too long, and it is deactivated.
    failing_since: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime, nullable=True)
    )
    disabled_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    created_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime, nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime, nullable=False)
    )


class WebhookDelivery(SQLModel, table=True):
    __tablename__ = "webhook_delivery"
    __table_args__ = (
        CheckConstraint(
            "state IN ('pending', 'delivered', 'failed')", name="ck_webhook_delivery_state"
        ),
        # The endpoint's deliveries, newest first (the list), and its earlier pending ones of an
        # employee (the claim keeps each employee's deliveries in feed order).
        Index("ix_webhook_delivery_endpoint_id_id", "endpoint_id", "id"),
        Index(
            "ix_webhook_delivery_endpoint_id_employee_id_event",
            "endpoint_id",
            "employee_id",
            "event_tx",
            "event_seq",
        ),
        # The claim: due pending deliveries.
        Index("ix_webhook_delivery_state_next_attempt_at", "state", "next_attempt_at"),
    )

    # SQLite assigns ids only to a plain INTEGER primary key; PostgreSQL gets a bigint.
    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    )
    endpoint_id: uuid.UUID = Field(
        sa_column=Column(
            Uuid,
            ForeignKey(
                "webhook_endpoint.id",
                ondelete="CASCADE",
                name="fk_webhook_delivery_endpoint_id_webhook_endpoint",
            ),
            nullable=False,
        )
    )
    event_id: str = Field(sa_column=Column(String(100), nullable=False))
    # The event's feed position (app.changes.events.EventPosition): the order of delivery.
    event_tx: int = Field(sa_column=Column(BigInteger, nullable=False))
    event_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    event_type: str = Field(sa_column=Column(String(30), nullable=False))
    employee_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    # The body as sent, the same bytes on every attempt.
    payload: str = Field(sa_column=Column(Text, nullable=False))
    state: str = Field(default=DeliveryState.pending, sa_column=Column(String(10), nullable=False))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    next_attempt_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime, nullable=False)
    )
    # A worker sending it holds it until then (no transaction is open during the request).
    locked_until: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime, nullable=True)
    )
    last_attempt_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime, nullable=True)
    )
    last_status: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    last_error: str | None = Field(
        default=None, sa_column=Column(String(MAX_ERROR_LENGTH), nullable=True)
    )
    delivered_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime, nullable=True)
    )
    created_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime, nullable=False)
    )
