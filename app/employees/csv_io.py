"""Employees as CSV in the database: whole-file checks, bulk writes and keyset-batched reads.

The file format itself (reading, checking and writing records) is `app.employees.csv_format`.
"""

import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from pydantic_core import to_jsonable_python
from sqlalchemy import Table, insert, select, text
from sqlalchemy.engine import Row as Record
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit import crud as audit
from app.audit.models import Actor, AuditAction, SystemActor
from app.core.errors import AppError, ConflictError
from app.core.types import utc_now
from app.employees import queries
from app.employees.csv_format import Row, RowError
from app.employees.models import Employee, EmployeeCreate, SortField, SortOrder

# Rows per query: one existence check, one INSERT, one page of an export.
BATCH_SIZE = 1000
# A write of this many rows refreshes the table's planner statistics at once.
ANALYZE_AFTER_ROWS = 1000
# An answer lists at most this many errors, then says how many more there were.
MAX_REPORTED_ERRORS = 1000

employee_table = cast(Table, Employee.__table__)  # type: ignore[attr-defined]


@dataclass
class Validation:
    """What a check of a whole file found: valid rows (when kept), and errors."""

    count: int = 0
    rows: list[EmployeeCreate] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    error_total: int = 0

    def fail(self, error: RowError) -> None:
        self.error_total += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(error)


async def validate(
    *,
    session: AsyncSession,
    items: Iterable[Row | RowError],
    max_rows: int | None = None,
    keep_rows: bool = True,
) -> Validation:
    """Check every row, duplicates in the file and emp_ids already stored (a query per batch).

    Only the emp_ids seen are held, so a file of any length is checked in bounded memory
    unless `keep_rows` asks for the rows too.
    """
    result = Validation()
    first_line: dict[int, int] = {}
    batch: list[Row] = []
    for item in items:
        if isinstance(item, RowError):
            result.fail(item)
            continue
        result.count += 1
        if max_rows is not None and result.count > max_rows:
            message = f"more than {max_rows} rows; split the file or use `python -m app import-csv`"
            result.fail(RowError(item.line, None, message, "too_many_rows"))
            break
        emp_id = item.data.emp_id
        if emp_id in first_line:
            message = f"emp_id {emp_id} is already on line {first_line[emp_id]} of this file"
            result.fail(RowError(item.line, "emp_id", message, "duplicate_in_file"))
            continue
        first_line[emp_id] = item.line
        batch.append(item)
        if keep_rows:
            result.rows.append(item.data)
        if len(batch) >= BATCH_SIZE:
            await _check_stored(session, batch, result)
            batch = []
    await _check_stored(session, batch, result)
    return result


async def _check_stored(session: AsyncSession, batch: list[Row], result: Validation) -> None:
    if not batch:
        return
    taken = await stored_emp_ids(session=session, emp_ids=[row.data.emp_id for row in batch])
    for row in batch:
        if row.data.emp_id in taken:
            message = f"an employee with emp_id {row.data.emp_id} already exists"
            result.fail(RowError(row.line, "emp_id", message, "already_exists"))


async def stored_emp_ids(*, session: AsyncSession, emp_ids: Sequence[int]) -> set[int]:
    column = employee_table.c.emp_id
    statement = select(column).where(column.in_(emp_ids))
    return set((await session.execute(statement)).scalars())


class ImportRejectedError(AppError):
    """A file with bad rows: every error, shaped like a request validation error (422)."""

    status_code = 422
    code = "invalid_rows"

    def __init__(self, validation: Validation) -> None:
        super().__init__(f"{validation.error_total} errors")
        self.validation = validation

    def body(self) -> dict[str, Any]:
        detail: list[dict[str, Any]] = []
        for error in self.validation.errors:
            loc = ["body", "file", error.line, *([error.field] if error.field else [])]
            detail.append({"type": error.type, "loc": loc, "msg": error.message})
        hidden = self.validation.error_total - len(self.validation.errors)
        if hidden:
            message = f"{hidden} more errors not listed"
            detail.append({"type": "too_many_errors", "loc": ["body", "file"], "msg": message})
        return {"detail": detail}


async def insert_batch(
    *, session: AsyncSession, rows: Sequence[EmployeeCreate], actor: Actor | SystemActor
) -> None:
    """Add one batch of records and their audit rows to the caller's transaction (no commit).

    Core INSERTs with many values, not ORM objects: a million rows do not pile up in the session.
    """
    if not rows:
        return
    now = utc_now()
    employees, audits = [], []
    for row in rows:
        values = row.model_dump()
        employees.append(
            {"id": uuid.uuid4(), **values, "created_at": now, "updated_at": now, "version": 1}
        )
        audits.append(
            {
                "employee_id": employees[-1]["id"],
                "emp_id": row.emp_id,
                "action": AuditAction.create.value,
                "version": 1,
                "actor_id": actor.user_id,
                "actor_username": actor.username,
                "request_id": actor.request_id,
                "changed_at": now,
                "changes": audit.diff(None, to_jsonable_python(values)),
            }
        )
    await session.execute(insert(employee_table), employees)
    await session.execute(insert(audit.audit_table), audits)


async def write_all(
    *,
    session: AsyncSession,
    batches: Iterable[Sequence[EmployeeCreate]],
    actor: Actor | SystemActor,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Insert every batch in one transaction: all rows are written, or none."""
    written = 0
    try:
        for batch in batches:
            await insert_batch(session=session, rows=batch, actor=actor)
            written += len(batch)
            if progress is not None:
                progress(len(batch))
        await session.commit()
    except IntegrityError:
        # The unique key decides: a concurrent writer took one of these emp_ids after the check.
        await session.rollback()
        raise ConflictError(
            "Another writer added one of these emp_ids meanwhile; nothing was imported"
        ) from None
    if written >= ANALYZE_AFTER_ROWS and session.get_bind().dialect.name == "postgresql":
        # The list's totals and plans come from the planner's statistics; autovacuum (which may
        # be off) would refresh them only later.
        await session.execute(text(f"ANALYZE {employee_table.name}"))
        await session.commit()
    return written


def batched(
    rows: Iterable[EmployeeCreate], size: int = BATCH_SIZE
) -> Iterator[list[EmployeeCreate]]:
    batch: list[EmployeeCreate] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


async def read_batches(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    city: str | None = None,
    country: str | None = None,
    sort_by: SortField = SortField.emp_id,
    order: SortOrder = SortOrder.asc,
    size: int | None = None,
) -> AsyncIterator[list[Record[Any]]]:
    """Every matching record, in list order, one keyset page per query.

    A session per page: a slow reader holds no connection (nor, on PostgreSQL, an open
    transaction) between pages.
    """
    after = None
    while True:
        async with sessionmaker() as session:
            rows, more = await queries.list_employees(
                session=session,
                limit=size or BATCH_SIZE,
                after=after,
                city=city,
                country=country,
                sort_by=sort_by,
                order=order,
            )
        if rows:
            yield rows
        if not more:
            return
        last = rows[-1]
        after = (getattr(last, sort_by.value), last.emp_id)
