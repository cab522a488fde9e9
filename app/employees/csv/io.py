"""Employees as CSV in the database: whole-file checks and keyset-batched reads (the format is
`csv.format`, the bulk write `crud.insert_all`).
"""

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Row as Record
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import AppError
from app.employees import crud, listing
from app.employees.csv.format import Row, RowError
from app.employees.models import EmployeeCreate, ListFilters

# Rows per query: one existence check, one INSERT, one page of an export.
BATCH_SIZE = 1000
# An answer lists at most this many errors, then says how many more there were.
MAX_REPORTED_ERRORS = 1000


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

    def finish(self) -> None:
        """An empty file is an error too; the errors are listed in line order (stored emp_ids
        are checked a batch at a time, after the rows' own checks)."""
        if not self.count and not self.error_total:
            self.fail(RowError(1, None, "the file has a header but no rows", "no_rows"))
        self.errors.sort(key=lambda error: error.line)


async def validate(
    *,
    session: AsyncSession,
    items: Iterable[Row | RowError],
    max_rows: int | None = None,
    keep_rows: bool = True,
) -> Validation:
    """Check every row, duplicates in the file and emp_ids already stored (a query per batch),
    holding only the emp_ids seen unless `keep_rows` asks for the rows."""
    result = Validation()
    first_line: dict[int, int] = {}
    batch: list[Row] = []
    for item in items:
        if isinstance(item, RowError):
            result.fail(item)
            continue
        result.count += 1
        if max_rows is not None and result.count > max_rows:
            result.fail(too_many_rows(item.line, max_rows))
            break
        emp_id = item.data.emp_id
        if emp_id in first_line:
            result.fail(duplicate_in_file(item.line, emp_id, first_line[emp_id]))
            continue
        first_line[emp_id] = item.line
        batch.append(item)
        if keep_rows:
            result.rows.append(item.data)
        if len(batch) >= BATCH_SIZE:
            await _check_stored(session, batch, result)
            batch = []
    await _check_stored(session, batch, result)
    result.finish()
    return result


async def _check_stored(session: AsyncSession, batch: list[Row], result: Validation) -> None:
    if not batch:
        return
    taken = await crud.stored_emp_ids(session=session, emp_ids=[row.data.emp_id for row in batch])
    for row in batch:
        if row.data.emp_id in taken:
            result.fail(already_exists(row.line, row.data.emp_id))


def too_many_rows(line: int, max_rows: int) -> RowError:
    message = f"more than {max_rows} rows; split the file or use `python -m app import-csv`"
    return RowError(line, None, message, "too_many_rows")


def duplicate_in_file(line: int, emp_id: int, first: int) -> RowError:
    message = f"emp_id {emp_id} is already on line {first} of this file"
    return RowError(line, "emp_id", message, "duplicate_in_file")


def already_exists(line: int, emp_id: int) -> RowError:
    message = f"an employee with emp_id {emp_id} already exists"
    return RowError(line, "emp_id", message, "already_exists")


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


Page = tuple[list[Record[Any]], bool]
# Runs a read in a session of its own (`app.db.reads.in_session`, or a request's `Reads.each`).
InSession = Callable[[Callable[[AsyncSession], Awaitable[Page]]], Awaitable[Page]]


async def _page(session: AsyncSession, *, filters: ListFilters, limit: int, after: Any) -> Page:
    return await listing.list_employees(
        session=session,
        limit=limit,
        after=after,
        city=filters.city,
        country=filters.country,
        sort_by=filters.sort_by,
        order=filters.order,
    )


async def read_batches(
    in_session: InSession,
    filters: ListFilters,
    *,
    size: int | None = None,
) -> AsyncIterator[list[Record[Any]]]:
    """Every matching record in list order, one keyset page per query, a session per page (a
    slow reader holds no connection between pages)."""
    after = None
    while True:
        page = functools.partial(_page, filters=filters, limit=size or BATCH_SIZE, after=after)
        rows, more = await in_session(page)
        if rows:
            yield rows
        if not more:
            return
        last = rows[-1]
        after = (getattr(last, filters.sort_by.value), last.emp_id)
