"""All SQL that reads or writes employee records, one or many; every change writes its audit row
in the same statement (PostgreSQL) or transaction (SQLite).
"""

import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from sqlalchemy import (
    Integer,
    Table,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    select,
    text,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.crud import ACCESS_COLUMNS, SIGNED_IN, Access, user_table, with_sign_in
from app.core.errors import ConflictError
from app.core.types import utc_now
from app.db.change_log import note_changes
from app.db.driver import transaction
from app.db.reader import Reader
from app.db.statements import Query
from app.employees.history import crud as history
from app.employees.history.models import Actor, AuditAction, SystemActor
from app.employees.models import READ_COLUMNS, Employee, EmployeeCreate, EmployeeRow

employee_table = cast(Table, Employee.__table__)  # type: ignore[attr-defined]
columns = employee_table.c
read_columns = [columns[name] for name in READ_COLUMNS]
# A bulk write of this many rows refreshes the table's planner statistics at once.
ANALYZE_AFTER_ROWS = 1000
TAKEN_MEANWHILE = "Another writer added one of these emp_ids meanwhile; nothing was imported"


def account_and_record(values: Any) -> tuple[Access, EmployeeRow | None]:
    width = len(READ_COLUMNS)
    record = EmployeeRow._make(values[:width]) if values[0] is not None else None
    return Access._make(values[width:]), record


# The caller's account drives the statement and the record is outer-joined to it: no account
# means no row at all, so nothing is said about the record before the account is admitted.
_account_columns = [
    *[user_table.c[name].label(f"account_{name}") for name in ACCESS_COLUMNS],
    SIGNED_IN,
]
_EMPLOYEE_AS = Query(
    select(*read_columns, *_account_columns)
    .select_from(
        with_sign_in(user_table.outerjoin(employee_table, columns.emp_id == bindparam("emp_id")))
    )
    .where(user_table.c.id == bindparam("user_id")),
    account_and_record,
)
# The same, the record locked until the commit so that writers of it queue up: PostgreSQL locks
# no nullable side of an outer join, hence a LATERAL subquery (SQLite needs neither).
# Writers of one emp_id queue on an advisory lock first, which the scan takes before the row
# lock above it: each takes its transaction id only at the head of the queue, so a record's
# changes have increasing transaction ids, the order the change feed serves them in
# (app.changes). Waiting for the row lock itself, a writer may take its id while it waits
# (following the record's update chain) and be overtaken by one that came later.
WRITE_QUEUE_SPACE = 0x656D70  # "emp": the lock's first key; the emp_id is the second
_queued = func.pg_advisory_xact_lock(
    literal_column(str(WRITE_QUEUE_SPACE)), bindparam("emp_id", type_=Integer)
).is_not(None)
_locked = (
    select(*read_columns).where(columns.emp_id == bindparam("emp_id"), _queued).with_for_update()
)
locked_record = _locked.lateral("locked")
_LOCK_AS = Query(
    _EMPLOYEE_AS.statement,
    account_and_record,
    postgresql=select(*[locked_record.c[name] for name in READ_COLUMNS], *_account_columns)
    .select_from(with_sign_in(user_table.outerjoin(locked_record, true())))
    .where(user_table.c.id == bindparam("user_id")),
)
_INSERT = history.LoggedWrite(
    insert(employee_table)
    .values({name: bindparam(name) for name in READ_COLUMNS})
    .returning(*read_columns),
    AuditAction.create,
    EmployeeRow._make,
)
# Every writable column is set, changed or not: one statement for any PATCH. The version in the
# WHERE clause makes it apply to the version that was read, and only to that one.
WRITABLE = ("emp_id", "emp_name", "city", "country", "emp_dob")
_UPDATE = history.LoggedWrite(
    update(employee_table)
    .where(columns.id == bindparam("row_id"), columns.version == bindparam("read_version"))
    .values({name: bindparam(name) for name in (*WRITABLE, "version", "updated_at")})
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
_EMPLOYEE = Query(
    select(*read_columns).where(columns.emp_id == bindparam("emp_id")), EmployeeRow._make
)
_EXISTS = Query(select(columns.id).where(columns.id == bindparam("row_id")), tuple)


def taken(emp_id: int) -> ConflictError:
    return ConflictError(f"An employee with emp_id {emp_id} already exists")


async def get_employee_as(
    *, reader: Reader, emp_id: int, user_id: uuid.UUID, sign_in_id: uuid.UUID | None
) -> tuple[Access | None, EmployeeRow | None]:
    """The caller's account (and sign-in) and one record, in one round trip."""
    found = await reader.first(_EMPLOYEE_AS, emp_id=emp_id, user_id=user_id, sign_in_id=sign_in_id)
    return (None, None) if found is None else found


async def get_employee(*, reader: Reader, emp_id: int) -> EmployeeRow | None:
    """One record alone (on the read replica: the account is checked on the primary)."""
    return await reader.first(_EMPLOYEE, emp_id=emp_id)


async def lock_employee_as(
    *, session: AsyncSession, emp_id: int, user_id: uuid.UUID, sign_in_id: uuid.UUID | None
) -> tuple[Access | None, EmployeeRow | None]:
    """The caller's account (and sign-in) and the record, locked until the session's
    transaction ends."""
    found = await _LOCK_AS.first(session, emp_id=emp_id, user_id=user_id, sign_in_id=sign_in_id)
    return (None, None) if found is None else found


async def insert_employee(
    *, session: AsyncSession, record: EmployeeRow, actor: Actor
) -> EmployeeRow:
    """Write a new record and its audit row, with whatever else the session holds; commit."""
    changes = history.diff(None, history.snapshot(record))
    try:
        async with transaction(session, one_statement=True):
            row = await _INSERT.first(session, actor=actor, changes=changes, **record._asdict())
            assert row is not None  # INSERT ... RETURNING returns the row it wrote
    except IntegrityError:
        # The unique constraint decides duplicates, so two racing requests cannot both win.
        raise taken(record.emp_id) from None
    return row


async def update_employee(
    *,
    session: AsyncSession,
    employee: EmployeeRow,
    values: dict[str, Any],
    changes: dict[str, Any],
    actor: Actor,
) -> EmployeeRow | None:
    """Write `values` (every writable column) over the version of the record that was read,
    with its audit row; None when that version is gone. No commit."""
    try:
        return await _UPDATE.first(
            session,
            actor=actor,
            changes=changes,
            **values,
            version=employee.version + 1,
            updated_at=utc_now(),
            row_id=employee.id,
            read_version=employee.version,
        )
    except IntegrityError:
        raise taken(values["emp_id"]) from None


async def delete_employee(*, session: AsyncSession, employee: EmployeeRow, actor: Actor) -> bool:
    """Delete the version of the record that was read, with its audit row; False when that
    version is gone. No commit."""
    deleted = await _DELETE.execute(session, row_id=employee.id, read_version=employee.version)
    if deleted:
        await history.record_change(
            session=session,
            actor=actor,
            action=AuditAction.delete,
            employee=employee,
            changes=history.diff(history.snapshot(employee), None),
            version=employee.version + 1,
        )
    return bool(deleted)


async def employee_exists(*, session: AsyncSession, row_id: uuid.UUID) -> bool:
    return await _EXISTS.first(session, row_id=row_id) is not None


async def highest_emp_id(*, session: AsyncSession) -> int:
    """The highest emp_id taken, 0 for an empty table."""
    highest = (await session.execute(select(func.max(columns.emp_id)))).scalar()
    return int(highest or 0)


async def stored_emp_ids(*, session: AsyncSession, emp_ids: Iterable[int]) -> set[int]:
    """Which of these emp_ids are taken."""
    statement = select(columns.emp_id).where(columns.emp_id.in_(list(emp_ids)))
    return set((await session.execute(statement)).scalars())


async def insert_all(
    *,
    session: AsyncSession,
    batches: Iterable[Sequence[EmployeeCreate]],
    actor: Actor | SystemActor,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Insert every batch and the audit rows in one transaction: all rows are written, or none
    (a concurrent writer that took one of the emp_ids is a 409). Core INSERTs with many values:
    a million rows do not pile up in the session as objects."""
    written = 0
    try:
        for batch in batches:
            await _insert_batch(session, batch, actor)
            written += len(batch)
            if progress is not None:
                progress(len(batch))
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise ConflictError(TAKEN_MEANWHILE) from None
    if written >= ANALYZE_AFTER_ROWS and session.get_bind().dialect.name == "postgresql":
        # The list's totals and plans use these statistics; autovacuum may be late, or off.
        await session.execute(text(f"ANALYZE {employee_table.name}"))
        await session.commit()
    return written


async def _insert_batch(
    session: AsyncSession, rows: Sequence[EmployeeCreate], actor: Actor | SystemActor
) -> None:
    if not rows:
        return
    note_changes(session)
    now = utc_now()
    employees, audits = [], []
    for row in rows:
        record = {"id": uuid.uuid4(), **row.model_dump(), "created_at": now, "updated_at": now}
        employees.append(record | {"version": 1})
        changes = history.diff(None, history.snapshot(row))
        who = history.who(actor, AuditAction.create, changes, changed_at=now)
        audits.append({"employee_id": record["id"], "emp_id": row.emp_id, "version": 1} | who)
    await session.execute(insert(employee_table), employees)
    await session.execute(insert(history.audit_table), audits)
