"""Stored answers to requests sent with an `Idempotency-Key`, so that a retry gets the same one."""

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Index, Integer, PrimaryKeyConstraint, String, Uuid
from sqlmodel import Field, SQLModel

from app.core.types import UTCDateTime, utc_now


class IdempotencyKey(SQLModel, table=True):
    __tablename__ = "idempotency_key"
    __table_args__ = (
        # Keys belong to the account that sent them: two clients cannot collide or read each
        # other's answers by guessing a key.
        PrimaryKeyConstraint("user_id", "key", name="pk_idempotency_key"),
        Index("ix_idempotency_key_expires_at", "expires_at"),
    )

    user_id: uuid.UUID = Field(
        sa_column=Column(
            Uuid,
            ForeignKey(
                "app_user.id", name="fk_idempotency_key_user_id_app_user", ondelete="CASCADE"
            ),
            nullable=False,
        )
    )
    key: str = Field(sa_column=Column(String(255), nullable=False))
    # SHA-256 of the method, path and normalised body: the same key with another body is refused.
    request_hash: str = Field(sa_column=Column(String(64), nullable=False))
    status_code: int = Field(sa_column=Column(Integer, nullable=False))
    response_body: Any = Field(sa_column=Column(JSON, nullable=False))
    response_headers: dict[str, str] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime, nullable=False)
    )
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    replayed: bool = False
