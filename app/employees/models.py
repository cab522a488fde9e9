"""Employee records: the table, and the shapes that cross the API."""

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, NamedTuple

from pydantic import AfterValidator, ConfigDict
from pydantic_core import to_json
from sqlalchemy import (
    CheckConstraint,
    Column,
    Date,
    Index,
    Integer,
    String,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlmodel import Field, SQLModel

from app.core.types import (
    INT32_MAX,
    PartialUpdate,
    PositiveInt32,
    Text100,
    UTCDateTime,
    utc_now,
)

EARLIEST_BIRTH_DATE = date(1900, 1, 1)


def _plausible_birth_date(value: date) -> date:
    if value < EARLIEST_BIRTH_DATE:
        raise ValueError(f"must not be before {EARLIEST_BIRTH_DATE.isoformat()}")
    if value > datetime.now(UTC).date():
        raise ValueError("must not be in the future")
    return value


BirthDate = Annotated[date, AfterValidator(_plausible_birth_date)]

EXAMPLE: dict[str, Any] = {
    "emp_id": 4242,
    "emp_name": "Ada Lovelace",
    "city": "London",
    "country": "United Kingdom",
    "emp_dob": "1985-12-10",
}


def etag(record: Any, suffix: str = "") -> str:
    """The `ETag` of a record: its row id and version (a record deleted and created again
    under the same emp_id must not match the old one's tags); `suffix` names a partial view."""
    return f'"{record.id.hex}-{record.version}{suffix}"'


class Employee(SQLModel, table=True):
    __tablename__ = "employee"
    __table_args__ = (
        UniqueConstraint("emp_id", name="uq_employee_emp_id"),
        CheckConstraint(f"emp_id BETWEEN 1 AND {INT32_MAX}", name="ck_employee_emp_id_range"),
        # One index per sort key; emp_id breaks ties, so an ordered page is one index range scan.
        Index("ix_employee_emp_name_emp_id", "emp_name", "emp_id"),
        Index("ix_employee_city_emp_id", "city", "emp_id"),
        Index("ix_employee_country_emp_id", "country", "emp_id"),
        Index("ix_employee_emp_dob_emp_id", "emp_dob", "emp_id"),
        # Case-insensitive "contains" filters (ILIKE '%term%' on PostgreSQL) use trigram indexes
        # instead of reading the whole table; SQLite has no such index type.
        *(
            Index(
                f"ix_employee_{name}_trgm",
                name,
                postgresql_using="gin",
                postgresql_ops={name: "gin_trgm_ops"},
                # No pending list: new rows are searchable through the index at once, instead
                # of piling up unindexed until a vacuum (and turning the plan into a seq scan).
                postgresql_with={"fastupdate": "off"},
            ).ddl_if(dialect="postgresql")
            for name in ("city", "country")
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid, primary_key=True))
    emp_id: int = Field(sa_column=Column(Integer, nullable=False))
    emp_name: str = Field(sa_column=Column(String(100), nullable=False))
    city: str = Field(sa_column=Column(String(100), nullable=False))
    country: str = Field(sa_column=Column(String(100), nullable=False))
    emp_dob: date = Field(sa_column=Column(Date, nullable=False))
    created_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime, nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime, nullable=False)
    )
    # Bumped by every change; the ETag is built from it, and a conditional write checks it in
    # the UPDATE's own WHERE clause.
    version: int = Field(
        default=1, sa_column=Column(Integer, nullable=False, server_default=text("1"))
    )

    @property
    def etag(self) -> str:
        return etag(self)


class EmployeeBase(SQLModel):
    emp_id: PositiveInt32
    emp_name: Text100
    city: Text100
    country: Text100
    emp_dob: BirthDate


class EmployeeCreate(EmployeeBase):
    """A whole record: the body of POST and of PUT (full replace)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})  # type: ignore[assignment]


class EmployeeUpdate(PartialUpdate):
    """A partial change: only the fields sent are touched; none of them may be null."""

    model_config = ConfigDict(  # type: ignore[assignment]
        extra="forbid", json_schema_extra={"examples": [{"city": "Paris", "country": "France"}]}
    )

    emp_id: PositiveInt32 | None = None
    emp_name: Text100 | None = None
    city: Text100 | None = None
    country: Text100 | None = None
    emp_dob: BirthDate | None = None


def _no_default(schema: dict[str, Any]) -> None:
    # An absent field, not a null one: the schema shows no default.
    schema.pop("default", None)


class EmployeeRead(SQLModel):
    model_config = ConfigDict(  # type: ignore[assignment]
        json_schema_extra={
            "examples": [
                {
                    "id": "7d0f4c1e-4b0a-4a53-9a55-1f1ad6f6f1b1",
                    **EXAMPLE,
                    "created_at": "2026-01-05T09:30:00Z",
                    "updated_at": "2026-01-05T09:30:00Z",
                    "version": 1,
                }
            ]
        }
    )

    id: uuid.UUID
    emp_id: int
    emp_name: str
    city: str
    country: str
    # Not required: EMPLOYEE_DOB_VISIBLE_TO may leave it out for the caller (docs/access.md).
    emp_dob: date = Field(
        default=None,
        description="Absent (the key itself) where `EMPLOYEE_DOB_VISIBLE_TO` hides birth dates "
        "from the caller's role; always present for administrators.",
        schema_extra={"json_schema_extra": _no_default},
    )
    created_at: datetime
    updated_at: datetime
    version: int = Field(description="Incremented by every change; the `ETag` is built from it.")


class EmployeeRow(NamedTuple):
    """A record as statements return it: the columns of `EmployeeRead`, in its order (a test
    holds the two together). Reads and writes serialise it straight to JSON."""

    id: uuid.UUID
    emp_id: int
    emp_name: str
    city: str
    country: str
    emp_dob: date
    created_at: datetime
    updated_at: datetime
    version: int


READ_COLUMNS = EmployeeRow._fields


def employee_json(row: Sequence[Any], hidden: Sequence[str] = ()) -> bytes:
    """One record (an `EmployeeRow` or a row of `READ_COLUMNS`) as `EmployeeRead` JSON, without
    the `hidden` fields (app.employees.privacy)."""
    return to_json(_shown(row, hidden))


def employees_json(rows: Iterable[Sequence[Any]], hidden: Sequence[str] = ()) -> bytes:
    """A page of records as a JSON array of `EmployeeRead`, without the `hidden` fields."""
    return to_json([_shown(row, hidden) for row in rows])


def _shown(row: Sequence[Any], hidden: Sequence[str]) -> dict[str, Any]:
    record = dict(zip(READ_COLUMNS, row, strict=False))
    for name in hidden:
        del record[name]
    return record


class SortField(StrEnum):
    emp_id = "emp_id"
    emp_name = "emp_name"
    emp_dob = "emp_dob"
    city = "city"
    country = "country"


class SortOrder(StrEnum):
    asc = "asc"
    desc = "desc"


@dataclass(frozen=True, slots=True)
class ListFilters:
    """Which records a list or an export holds, and in which order."""

    city: str | None = None
    country: str | None = None
    sort_by: SortField = SortField.emp_id
    order: SortOrder = SortOrder.asc
