"""Events of the change feed: their positions, their ids and the item every path delivers."""

import base64
import binascii
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict
from pydantic_core import to_jsonable_python

from app.core.errors import InvalidInputError
from app.employees.models import EXAMPLE, EmployeeRead

# The PostgreSQL channel committed changes are announced on (app.changes.crud.announce): a wake-up
# that carries nothing; whoever wakes reads the feed from its own position.
CHANNEL = "employee_changes"

ChangeType = Literal["employee.created", "employee.updated", "employee.deleted"]
TYPES: dict[str, ChangeType] = {
    "create": "employee.created",
    "update": "employee.updated",
    "delete": "employee.deleted",
}
CHANGE_TYPES: tuple[ChangeType, ...] = tuple(TYPES.values())

_PREFIX = "ev_"
_PACKED = struct.Struct(">QQ")
_ENCODED_LENGTH = len(_PREFIX) + 22  # 16 bytes in unpadded base64


AFTER = ("query", "after")


class InvalidEventIdError(InvalidInputError):
    """An `after` or `Last-Event-ID` this service did not hand out (422)."""

    def __init__(self, loc: tuple[str, ...] = AFTER) -> None:
        super().__init__("Not an event id of this feed", loc=loc)


class EventPosition(NamedTuple):
    """Where an event sits in the feed: its transaction's id (0 on SQLite), then its row's."""

    tx: int
    id: int


def encode_event_id(position: EventPosition) -> str:
    packed = _PACKED.pack(*position)
    return _PREFIX + base64.urlsafe_b64encode(packed).rstrip(b"=").decode("ascii")


def decode_event_id(text: str, loc: tuple[str, ...] = AFTER) -> EventPosition:
    """The position an event id names; a 422 (at `loc`) for anything this service could not
    have made. Whether the event exists is the service's question (app.changes.service)."""
    if len(text) != _ENCODED_LENGTH or not text.startswith(_PREFIX):
        raise InvalidEventIdError(loc)
    try:
        packed = base64.urlsafe_b64decode(text[len(_PREFIX) :] + "==")
        position = EventPosition(*_PACKED.unpack(packed))
    except (binascii.Error, ValueError, struct.error):
        raise InvalidEventIdError(loc) from None
    if encode_event_id(position) != text:  # one spelling per id: no aliases of a position
        raise InvalidEventIdError(loc)
    return position


@dataclass(frozen=True, slots=True)
class Change:
    """One event: a record created, changed or deleted, and the record as it was then."""

    position: EventPosition
    employee_id: uuid.UUID  # the record's lasting identity (emp_id may be renumbered)
    type: ChangeType
    emp_id: int
    version: int
    occurred_at: datetime
    changed_fields: list[str]
    employee: dict[str, Any] | None  # as GET returned it at this version; None once deleted

    @property
    def event_id(self) -> str:
        return encode_event_id(self.position)


def feed_item(change: Change, hidden: Sequence[str] = ()) -> dict[str, Any]:
    """The event as the feed, the streams and the webhooks deliver it (JSON values), without
    the private fields the reader may not see (app.employees.privacy)."""
    employee = change.employee
    if employee is not None and hidden:
        employee = {name: value for name, value in employee.items() if name not in hidden}
    return {
        "event_id": change.event_id,
        "type": change.type,
        "emp_id": change.emp_id,
        "version": change.version,
        "occurred_at": to_jsonable_python(change.occurred_at),
        "changed_fields": [name for name in change.changed_fields if name not in hidden],
        "employee": employee,
    }


class ChangeEventRead(BaseModel):
    """An event of the change feed, as `GET /employees/changes` and the streams deliver it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "event_id": "ev_AAAAAAAAAvUAAAAAAAAAKg",
                    "type": "employee.updated",
                    "emp_id": EXAMPLE["emp_id"],
                    "version": 2,
                    "occurred_at": "2026-01-05T09:30:00Z",
                    "changed_fields": ["city"],
                    "employee": {
                        "id": "7d0f4c1e-4b0a-4a53-9a55-1f1ad6f6f1b1",
                        **EXAMPLE,
                        "created_at": "2026-01-04T08:00:00Z",
                        "updated_at": "2026-01-05T09:30:00Z",
                        "version": 2,
                    },
                }
            ]
        }
    )

    event_id: str
    type: ChangeType
    emp_id: int
    version: int
    occurred_at: datetime
    changed_fields: list[str]
    employee: EmployeeRead | None
