"""Reusable constrained types for input models and query parameters."""

import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field, field_validator
from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel

INT32_MAX = 2_147_483_647
TEXT_MAX_LENGTH = 100


def reject_control_characters(value: str) -> str:
    # NUL breaks PostgreSQL text, lone surrogates cannot be encoded as UTF-8 at all, and other
    # control characters have no place in a name; all of them would otherwise surface as a 500.
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise ValueError("must not contain control characters")
    return value


def _trimmed_non_empty(value: str) -> str:
    value = reject_control_characters(value).strip()
    if not value:
        raise ValueError("must not be blank")
    return value


# A human-readable text field: trimmed, 1..100 characters, printable.
Text100 = Annotated[
    str, Field(min_length=1, max_length=TEXT_MAX_LENGTH), AfterValidator(_trimmed_non_empty)
]
# A search term in a query string obeys the same rules as the text it searches.
SearchTerm = Text100
# A business key that fits PostgreSQL's `integer`.
PositiveInt32 = Annotated[int, Field(ge=1, le=INT32_MAX)]


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored with its zone; SQLite drops the zone, so it is put back as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, _: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value

    def process_result_value(self, value: datetime | None, _: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utc_now() -> datetime:
    return datetime.now(UTC)


class PartialUpdate(SQLModel):
    """Base of PATCH bodies: every field optional, none of them nullable (the OpenAPI schema
    offers only the type: app.http.openapi)."""

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_null(cls, value: Any) -> Any:
        # Runs only for fields present in the body: an omitted field is "unchanged", a null one
        # would blank a required column.
        if value is None:
            raise ValueError("may be omitted but not null")
        return value
