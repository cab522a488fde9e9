"""All SQL that touches employee records; every change writes its audit row in the same commit."""

import uuid
from dataclasses import dataclass
from typing import Any, NoReturn, cast

from pydantic_core import to_jsonable_python
from sqlalchemy import Table, bindparam, delete, insert, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import crud as audit
from app.audit.models import Actor, AuditAction, Caller
from app.core.driver import transaction
from app.core.errors import ConflictError, NotFoundError, PreconditionFailedError
from app.core.preconditions import check_if_match
from app.core.sql import Query
from app.core.types import utc_now
from app.employees import queries
from app.employees.models import Employee, EmployeeCreate, EmployeeRead, etag
from app.employees.queries import READ_COLUMNS, EmployeeRow, read_columns
from app.users.crud import user_table

# The Core table: its typed columns build filters and orderings.
employee_table = cast(Table, Employee.__table__)  # type: ignore[attr-defined]
columns = employee_table.c

# Statements built once, values bound per request. A write reads and returns records as
# `EmployeeRow`s, which the handler serialises straight to JSON (`queries.employee_json`).

# The caller's account and the record a write is about to change, locked until the commit, in
# one statement. PostgreSQL refuses FOR UPDATE on the nullable side of an outer join, so the
# record comes from a LATERAL subquery that locks it. SQLite has neither LATERAL nor row locks:
# the account outer-joined to the record, as a read has it; the write's version check decides.
_locked = (
    select(*read_columns)
    .where(columns.emp_id == bindparam("emp_id"))
    .with_for_update()
    .lateral("locked")
)
_LOCK_AS = Query(
    queries.EMPLOYEE_AS.statement,
    queries.account_and_record,
    postgresql=select(*[_locked.c[name] for name in READ_COLUMNS], *queries.account_columns)
    .select_from(user_table.outerjoin(_locked, true()))
    .where(user_table.c.id == bindparam("user_id")),
)
_INSERT = audit.LoggedWrite(
    insert(employee_table)
    .values({name: bindparam(name) for name in READ_COLUMNS})
    .returning(*read_columns),
    AuditAction.create,
    EmployeeRow._make,
)
# Every writable column is set, changed or not: one statement for any PATCH. The version in the
# WHERE clause makes it apply to the version that was read, and only to that one.
_WRITABLE = ("emp_id", "emp_name", "city", "country", "emp_dob")
_UPDATE = audit.LoggedWrite(
    update(employee_table)
    .where(columns.id == bindparam("row_id"), columns.version == bindparam("read_version"))
    .values(
        {name: bindparam(name) for name in (*_WRITABLE, "version", "updated_at")},
    )
    .returning(*read_columns),
    AuditAction.update,
    EmployeeRow._make,
)
_DELETE = Query(
    delete(employee_table).where(
        columns.id == bindparam("row_id"), columns.version == bindparam("read_version")
    ),
    tuple,
)
_EXISTS = Query(select(columns.id).where(columns.id == bindparam("row_id")), tuple)


@dataclass(frozen=True, slots=True)
class IfMatch:
    """A write's `If-Match` header, and whether the service requires one."""

    header: str | None = None
    required: bool = False


async def lock_employee(
    *, session: AsyncSession, emp_id: int, caller: Caller
) -> tuple[Actor, EmployeeRow]:
    """The writer, once the caller's account passes its check (401/403), and the record it is
    about to change, locked until the commit (PostgreSQL): writers of one record queue up behind
    each other instead of failing on each other's new version."""
    found = await _LOCK_AS.first(session, emp_id=emp_id, user_id=caller.user_id)
    account, employee = (None, None) if found is None else found
    actor = caller.admit(account)  # before anything is said about the record
    if employee is None:
        raise NotFoundError(f"Employee {emp_id} not found")
    return actor, employee


def new_record(data: EmployeeCreate) -> EmployeeRead:
    """A new record, complete before it is written: id, timestamps and version 1."""
    now = utc_now()
    return EmployeeRead(
        id=uuid.uuid4(), **data.model_dump(), created_at=now, updated_at=now, version=1
    )


async def insert_employee(
    *, session: AsyncSession, record: EmployeeRead, actor: Actor
) -> EmployeeRow:
    """Write a new record and its audit row, with whatever else the session holds; commit."""
    changes = audit.diff(None, audit.snapshot(record))
    try:
        # On PostgreSQL the record and its audit row are one statement, atomic by itself.
        async with transaction(session, one_statement=True):
            row = await _INSERT.first(session, actor=actor, changes=changes, **record.model_dump())
            assert row is not None  # INSERT ... RETURNING returns the row it wrote
    except IntegrityError:
        # The unique constraint decides duplicates, so two racing requests cannot both win.
        raise ConflictError(f"An employee with emp_id {record.emp_id} already exists") from None
    return row


async def create_employee(
    *, session: AsyncSession, data: EmployeeCreate, actor: Actor
) -> EmployeeRow:
    return await insert_employee(session=session, record=new_record(data), actor=actor)


async def update_employee(
    *,
    session: AsyncSession,
    emp_id: int,
    changes: dict[str, Any],
    caller: Caller,
    if_match: IfMatch,
) -> EmployeeRow:
    """Apply `changes` to the record's current version, once `If-Match` allows it.

    A change that alters nothing writes nothing: no new version, no audit row.
    """
    async with transaction(session):
        actor, employee = await lock_employee(session=session, emp_id=emp_id, caller=caller)
        conditional = check_if_match(if_match.header, etag(employee), required=if_match.required)
        before = audit.snapshot(employee)
        delta = audit.diff(before, before | to_jsonable_python(changes))
        if not delta:
            return employee
        values = {name: changes.get(name, getattr(employee, name)) for name in _WRITABLE}
        try:
            row = await _UPDATE.first(
                session,
                actor=actor,
                changes=delta,
                **values,
                version=employee.version + 1,
                updated_at=utc_now(),
                row_id=employee.id,
                read_version=employee.version,
            )
        except IntegrityError:
            taken = values["emp_id"]
            raise ConflictError(f"An employee with emp_id {taken} already exists") from None
        if row is None:
            await _refuse_stale_write(session, employee, conditional=conditional)
    return row


async def delete_employee(
    *, session: AsyncSession, emp_id: int, caller: Caller, if_match: IfMatch
) -> None:
    async with transaction(session):
        actor, employee = await lock_employee(session=session, emp_id=emp_id, caller=caller)
        conditional = check_if_match(if_match.header, etag(employee), required=if_match.required)
        deleted = await _DELETE.execute(session, row_id=employee.id, read_version=employee.version)
        if deleted == 0:
            await _refuse_stale_write(session, employee, conditional=conditional)
        await audit.record_change(
            session=session,
            actor=actor,
            action=AuditAction.delete,
            employee=employee,
            changes=audit.diff(audit.snapshot(employee), None),
            version=employee.version + 1,
        )


async def _refuse_stale_write(
    session: AsyncSession, employee: EmployeeRow, *, conditional: bool
) -> NoReturn:
    """The write matched no row: the record was deleted, or another writer got there first."""
    if await _EXISTS.first(session, row_id=employee.id) is None:
        raise NotFoundError(f"Employee {employee.emp_id} not found")
    if conditional:
        raise PreconditionFailedError(
            "The record changed since you read it; fetch it again for the current ETag"
        )
    # Only without row locks (SQLite): the record changed between our read and our write.
    raise ConflictError(f"Employee {employee.emp_id} was changed by another request; retry")
