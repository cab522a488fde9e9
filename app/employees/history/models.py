"""The employee audit trail: who changed which fields of a record, when, and in which request."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter
from sqlalchemy import JSON, BigInteger, CheckConstraint, Column, Index, Integer, String, Uuid
from sqlmodel import Field, SQLModel

from app.core.types import UTCDateTime, utc_now
from app.db.transaction_id import CURRENT_TRANSACTION_ID


class AuditAction(StrEnum):
    create = "create"
    update = "update"
    delete = "delete"


@dataclass(frozen=True)
class Actor:
    """Who is writing, and in which request: stamped on every audit row the write produces."""

    user_id: uuid.UUID
    username: str
    request_id: str | None


@dataclass(frozen=True)
class SystemActor:
    """A job without an account (e.g. `cli:import-csv`): its audit rows have no actor_id."""

    username: str
    user_id: None = None
    request_id: None = None


class EmployeeAudit(SQLModel, table=True):
    __tablename__ = "employee_audit"
    __table_args__ = (
        CheckConstraint(
            "action IN ('create', 'update', 'delete')", name="ck_employee_audit_action"
        ),
        Index("ix_employee_audit_employee_id_id", "employee_id", "id"),
        Index("ix_employee_audit_emp_id_id", "emp_id", "id"),
        Index("ix_employee_audit_tx_id_id", "tx_id", "id"),
    )

    # SQLite assigns ids only to a plain INTEGER primary key; PostgreSQL gets a bigint.
    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    )
    # No foreign keys: the trail outlives the employee row and the account that wrote it.
    employee_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    emp_id: int = Field(sa_column=Column(Integer, nullable=False))
    action: str = Field(sa_column=Column(String(10), nullable=False))
    version: int = Field(sa_column=Column(Integer, nullable=False))
    actor_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid, nullable=True))
    actor_username: str | None = Field(default=None, sa_column=Column(String(50), nullable=True))
    request_id: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    changed_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime, nullable=False)
    )
    changes: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # The writing transaction's id (PostgreSQL; 0 on SQLite, whose writers take turns): the
    # change feed (app.changes) orders by (tx_id, id) and serves a transaction's rows only once
    # no transaction that could still commit before it is running.
    tx_id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger, nullable=False, server_default=CURRENT_TRANSACTION_ID),
    )


class FieldChange(BaseModel):
    before: Any = None
    after: Any = None


class AuditEntryRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": 42,
                    "action": "update",
                    "emp_id": 4242,
                    "version": 3,
                    "changed_at": "2026-01-05T09:30:00Z",
                    "actor_id": "0b7c6f1e-2f7d-4d8e-9d3a-5c1f0f1e2a3b",
                    "actor_username": "root.admin",
                    "request_id": "5f0c2b8e9d7a4c1b8e3f6a2d1c0b9e8f",
                    "changes": {"city": {"before": "London", "after": "Paris"}},
                }
            ]
        },
    )

    id: int
    action: AuditAction
    emp_id: int
    version: int
    changed_at: datetime
    actor_id: uuid.UUID | None
    actor_username: str | None
    request_id: str | None
    changes: dict[str, FieldChange]


_ENTRIES = TypeAdapter(list[AuditEntryRead])


def audit_entries_json(entries: Sequence[EmployeeAudit], hidden: Sequence[str] = ()) -> bytes:
    """A page of the history as the JSON array of `AuditEntryRead` its `response_model` names,
    without the changes of the `hidden` fields (app.employees.privacy)."""
    shown = _ENTRIES.validate_python(entries, from_attributes=True)
    for entry in shown:
        for name in hidden:
            entry.changes.pop(name, None)
    return _ENTRIES.dump_json(shown)
