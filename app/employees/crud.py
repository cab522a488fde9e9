"""All SQL that touches employee records; every change writes its audit row in the same commit."""

import uuid
from typing import Any, NoReturn, cast

from pydantic_core import to_jsonable_python
from sqlalchemy import (
    CursorResult,
    Row,
    Table,
    bindparam,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import crud as audit
from app.audit.models import Actor, AuditAction
from app.core.errors import ConflictError, NotFoundError, PreconditionFailedError
from app.core.types import utc_now
from app.employees.models import Employee, EmployeeCreate, EmployeeRead
from app.employees.queries import read_columns

# The Core table: its typed columns build filters and orderings.
employee_table = cast(Table, Employee.__table__)  # type: ignore[attr-defined]


# A write reads and returns records as plain rows in the shape of `EmployeeRead` (Core, no ORM
# instances): the handler serialises them straight to JSON (`queries.employee_json`).
WriteRow = Row[Any]


# Statements built once (values bound per request): building one costs more than running it.
_LOCK = (
    select(*read_columns).where(employee_table.c.emp_id == bindparam("emp_id")).with_for_update()
)
_INSERT = insert(employee_table).returning(*read_columns)


async def lock_employee(*, session: AsyncSession, emp_id: int) -> WriteRow | None:
    """The record a write is about to change, as a row locked until the commit (PostgreSQL):
    writers of one record queue up behind each other instead of failing on each other's new
    version. SQLite has no row locks; the version check in the write's WHERE clause decides."""
    return (await session.execute(_LOCK, {"emp_id": emp_id})).first()


def new_record(data: EmployeeCreate) -> EmployeeRead:
    """A new record, complete before it is written: id, timestamps and version 1."""
    now = utc_now()
    return EmployeeRead(
        id=uuid.uuid4(), **data.model_dump(), created_at=now, updated_at=now, version=1
    )


async def insert_employee(*, session: AsyncSession, record: EmployeeRead, actor: Actor) -> WriteRow:
    """Write a new record and its audit row, with whatever else the session holds; commit."""
    try:
        row = (await session.execute(_INSERT, record.model_dump())).one()
        changes = audit.diff(None, audit.snapshot(row))
        await audit.record_change(
            session=session, actor=actor, action=AuditAction.create, employee=row, changes=changes
        )
        await session.commit()
    except IntegrityError:
        # The unique constraint decides duplicates, so two racing requests cannot both win.
        await session.rollback()
        raise ConflictError(f"An employee with emp_id {record.emp_id} already exists") from None
    return row


async def create_employee(*, session: AsyncSession, data: EmployeeCreate, actor: Actor) -> WriteRow:
    return await insert_employee(session=session, record=new_record(data), actor=actor)


async def update_employee(
    *,
    session: AsyncSession,
    employee: WriteRow,
    changes: dict[str, Any],
    actor: Actor,
    conditional: bool = False,
) -> WriteRow:
    """Apply `changes` to the version of the record that was read, and only to that version.

    A change that alters nothing writes nothing: no new version, no audit row.
    """
    before = audit.snapshot(employee)
    delta = audit.diff(before, before | to_jsonable_python(changes))
    if not delta:
        return employee
    statement = (
        update(employee_table)
        .where(employee_table.c.id == employee.id, employee_table.c.version == employee.version)
        .values(**changes, version=employee.version + 1, updated_at=utc_now())
        .returning(*read_columns)
    )
    target_emp_id = changes.get("emp_id", employee.emp_id)
    try:
        row = (await session.execute(statement)).one_or_none()
    except IntegrityError:
        await session.rollback()
        raise ConflictError(f"An employee with emp_id {target_emp_id} already exists") from None
    if row is None:
        await _refuse_stale_write(session, employee, conditional=conditional)
    await audit.record_change(
        session=session, actor=actor, action=AuditAction.update, employee=row, changes=delta
    )
    await session.commit()
    return row


async def delete_employee(
    *, session: AsyncSession, employee: WriteRow, actor: Actor, conditional: bool = False
) -> None:
    statement = delete(employee_table).where(
        employee_table.c.id == employee.id, employee_table.c.version == employee.version
    )
    result = cast(CursorResult[Any], await session.execute(statement))
    if result.rowcount == 0:
        await _refuse_stale_write(session, employee, conditional=conditional)
    await audit.record_change(
        session=session,
        actor=actor,
        action=AuditAction.delete,
        employee=employee,
        changes=audit.diff(audit.snapshot(employee), None),
        version=employee.version + 1,
    )
    await session.commit()


async def _refuse_stale_write(
    session: AsyncSession, employee: WriteRow, *, conditional: bool
) -> NoReturn:
    """The write matched no row: the record was deleted, or another writer got there first."""
    still_there = (
        await session.execute(select(employee_table.c.id).where(employee_table.c.id == employee.id))
    ).first()
    await session.rollback()
    if still_there is None:
        raise NotFoundError(f"Employee {employee.emp_id} not found")
    if conditional:
        raise PreconditionFailedError(
            "The record changed since you read it; fetch it again for the current ETag"
        )
    # Only without row locks (SQLite): the record changed between our read and our write.
    raise ConflictError(f"Employee {employee.emp_id} was changed by another request; retry")
