"""Reads of employee records as plain rows, serialised to JSON without ORM instances.

Reads are most of the traffic. A Core statement returning rows costs a fraction of loading ORM
instances and validating them into response models, and the values come from typed columns
already, so they go straight to JSON in the shape of `EmployeeRead`.
"""

import datetime
import uuid
from typing import Any, NamedTuple, cast

from pydantic_core import to_json
from sqlalchemy import (
    ColumnElement,
    Row,
    Table,
    bindparam,
    literal,
    select,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.sql import Query, Reads
from app.employees.models import Employee, SortField, SortOrder
from app.users.crud import ACCESS_COLUMNS, Access, user_table

employee_table = cast(Table, Employee.__table__)  # type: ignore[attr-defined]


class EmployeeRow(NamedTuple):
    """A record as statements return it: the columns of `EmployeeRead`, in its order (a test
    holds the two together)."""

    id: uuid.UUID
    emp_id: int
    emp_name: str
    city: str
    country: str
    emp_dob: datetime.date
    created_at: datetime.datetime
    updated_at: datetime.datetime
    version: int


# The columns a read returns, in the order and under the names of `EmployeeRead`.
READ_COLUMNS = EmployeeRow._fields
read_columns = [employee_table.c[name] for name in READ_COLUMNS]


def account_and_record(values: Any) -> tuple[Access, EmployeeRow | None]:
    width = len(READ_COLUMNS)
    record = EmployeeRow._make(values[:width]) if values[0] is not None else None
    return Access._make(values[width:]), record


# The caller's account drives the statement and the record is outer-joined to it: no account
# means no row at all (the caller is refused before anything is said about the record), and an
# account without a record means 404. Built once; the values are bound per request.
account_columns = [user_table.c[name].label(f"account_{name}") for name in ACCESS_COLUMNS]
EMPLOYEE_AS = Query(
    select(*read_columns, *account_columns)
    .select_from(
        user_table.outerjoin(employee_table, employee_table.c.emp_id == bindparam("emp_id"))
    )
    .where(user_table.c.id == bindparam("user_id")),
    account_and_record,
)


async def get_employee_as(
    *, reads: Reads, emp_id: int, user_id: uuid.UUID
) -> tuple[Access | None, EmployeeRow | None]:
    """The caller's account and one record, in one round trip."""
    found = await EMPLOYEE_AS.first(reads, emp_id=emp_id, user_id=user_id)
    return (None, None) if found is None else found


def employee_json(row: EmployeeRow | Row[Any]) -> bytes:
    """One record as `EmployeeRead` JSON."""
    return to_json(dict(zip(READ_COLUMNS, row, strict=False)))


def employees_json(rows: list[Row[Any]]) -> bytes:
    """A page of records as a JSON array of `EmployeeRead`."""
    return to_json([dict(zip(READ_COLUMNS, row, strict=False)) for row in rows])


# --- The list ---------------------------------------------------------------------------------


def list_filters(city: str | None, country: str | None) -> list[ColumnElement[bool]]:
    """The list's substring filters; autoescape: a client's "%" or "_" matches itself."""
    conditions = []
    if city is not None:
        conditions.append(employee_table.c.city.icontains(city, autoescape=True))
    if country is not None:
        conditions.append(employee_table.c.country.icontains(country, autoescape=True))
    return conditions


async def list_employees(
    *,
    session: AsyncSession,
    limit: int,
    offset: int = 0,
    after: tuple[Any, int] | None = None,
    city: str | None = None,
    country: str | None = None,
    sort_by: SortField = SortField.emp_id,
    order: SortOrder = SortOrder.asc,
) -> tuple[list[Row[Any]], bool]:
    """One page of `READ_COLUMNS` rows in (sort key, emp_id) order, and whether more follow it.

    `after` is a keyset position: the page starts past that row through an index range scan, so
    the thousandth page costs what the first does; `offset` skips rows one by one.
    """
    conditions = list_filters(city, country)
    columns = employee_table.c
    keys = [columns[sort_by.value]] + ([] if sort_by is SortField.emp_id else [columns.emp_id])
    descending = order is SortOrder.desc
    if after is not None:
        # A row comparison, (key, emp_id) > (last key, last emp_id): one index range condition.
        row, past = tuple_(*keys), tuple_(*(after[1:] if len(keys) == 1 else after))
        conditions.append(row < past if descending else row > past)
    ordering = [key.desc() if descending else key.asc() for key in keys]
    # The page size is written into the SQL, not bound: asyncpg prepares each statement, and
    # after five runs PostgreSQL may switch to a plan made without the values. Not knowing the
    # LIMIT, that plan merge-joins the table from its first row down to the offset (5x slower
    # at offset 50,000); knowing it is at most 101 rows, it looks each one up.
    size = literal(limit + 1, literal_execute=True)
    statement = select(*read_columns).where(*conditions).order_by(*ordering).limit(size)
    if offset:
        # Deferred join: the rows to skip are counted in the (sort key, emp_id) index alone
        # (an index-only scan), and only the page's rows are read from the table, instead of
        # fetching every skipped row from the heap.
        page = (
            select(columns.emp_id)
            .where(*conditions)
            .order_by(*ordering)
            .offset(offset)
            .limit(size)
            .subquery()
        )
        statement = (
            select(*read_columns)
            .join(page, columns.emp_id == page.c.emp_id)
            .order_by(*ordering)
            .limit(size)
        )
    rows = list(await session.execute(statement))
    return rows[:limit], len(rows) > limit
