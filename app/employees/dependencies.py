"""Path parameters resolved to records, and the conditional-request headers of a write."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Path

from app.auth.dependencies import SettingsDep
from app.core.db import SessionDep
from app.core.errors import NotFoundError
from app.core.preconditions import check_if_match
from app.core.types import INT32_MAX
from app.employees import crud
from app.employees.models import etag

EmpIdPath = Annotated[int, Path(ge=1, le=INT32_MAX, description="The employee's business key.")]

IfMatchHeader = Annotated[
    str | None,
    Header(
        max_length=1000,
        description="Write only if the record still has this `ETag` (or `*`); 412 otherwise.",
    ),
]
IfNoneMatchHeader = Annotated[
    str | None,
    Header(
        max_length=1000,
        description="Answer 304 with no body if the record still has this `ETag`.",
    ),
]


@dataclass(frozen=True)
class WriteTarget:
    employee: crud.WriteRow
    # The client named the version it read (If-Match with tags): the write applies to that
    # version or not at all.
    conditional: bool


async def get_write_target(
    emp_id: EmpIdPath, session: SessionDep, settings: SettingsDep, if_match: IfMatchHeader = None
) -> WriteTarget:
    """The record, row-locked for this request's write, with its `If-Match` checked."""
    employee = await crud.lock_employee(session=session, emp_id=emp_id)
    if employee is None:
        raise NotFoundError(f"Employee {emp_id} not found")
    conditional = check_if_match(if_match, etag(employee), required=settings.require_if_match)
    return WriteTarget(employee, conditional)


WriteTargetDep = Annotated[WriteTarget, Depends(get_write_target)]
