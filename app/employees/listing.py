"""The employee list: a page in (sort key, emp_id) order, and the keyset cursors that walk it."""

from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, Row, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.types import INT32_MAX
from app.employees.crud import employee_table, read_columns
from app.employees.models import SortField, SortOrder
from app.http.pagination import InvalidCursorError, decode_cursor, encode_cursor

# (sort key value, emp_id) of the last row of the previous page.
After = tuple[Any, int]


def cursor_after(record: Any, sort_by: SortField, order: SortOrder) -> str:
    """The cursor of the page after `record` (a row or an instance with the list's columns)."""
    value = getattr(record, sort_by.value)
    if isinstance(value, date):
        value = value.isoformat()
    return encode_cursor([sort_by.value, order.value, value, record.emp_id])


def parse_cursor(token: str, sort_by: SortField, order: SortOrder) -> After:
    """The position a cursor names, checked against the order it was issued for."""
    values = decode_cursor(token)
    if len(values) != 4:
        raise InvalidCursorError()
    field, direction, value, emp_id = values
    if (field, direction) != (sort_by.value, order.value):
        raise InvalidCursorError("belongs to another sort_by or order")
    if type(emp_id) is not int or not 1 <= emp_id <= INT32_MAX:
        raise InvalidCursorError()
    return _sort_value(sort_by, value), emp_id


def _sort_value(sort_by: SortField, value: Any) -> Any:
    if sort_by is SortField.emp_id:
        if type(value) is not int or not 1 <= value <= INT32_MAX:
            raise InvalidCursorError()
        return value
    # Text: `decode_cursor` refused control characters and surrogates for every key.
    if not isinstance(value, str) or not 0 < len(value) <= 100:
        raise InvalidCursorError()
    if sort_by is SortField.emp_dob:
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise InvalidCursorError() from None
    return value


def list_filters(city: str | None, country: str | None) -> list[ColumnElement[bool]]:
    """The list's substring filters; autoescape: a client's "%" or "_" matches itself."""
    conditions = []
    if city is not None:
        conditions.append(employee_table.c.city.icontains(city, autoescape=True))
    if country is not None:
        conditions.append(employee_table.c.country.icontains(country, autoescape=True))
    return conditions


def sort_keys(sort_by: SortField, order: SortOrder) -> list[ColumnElement[Any]]:
    """The list's ORDER BY: the sort key, then emp_id to break ties."""
    columns = employee_table.c
    keys = [columns[sort_by.value]] + ([] if sort_by is SortField.emp_id else [columns.emp_id])
    return [key.desc() if order is SortOrder.desc else key.asc() for key in keys]


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
    """One page in (sort key, emp_id) order and whether more follow: past `after` (a keyset
    position, an index range scan) or past `offset` rows (skipped one by one)."""
    conditions = list_filters(city, country)
    columns = employee_table.c
    keys = [columns[sort_by.value]] + ([] if sort_by is SortField.emp_id else [columns.emp_id])
    descending = order is SortOrder.desc
    if after is not None:
        # A row comparison, (key, emp_id) > (last key, last emp_id): one index range condition.
        row, past = tuple_(*keys), tuple_(*(after[1:] if len(keys) == 1 else after))
        conditions.append(row < past if descending else row > past)
    ordering = sort_keys(sort_by, order)
    # The page size is written into the SQL, not bound: a prepared statement's generic plan,
    # made without knowing the LIMIT, would scan from the first row down to a deep offset.
    size = literal(limit + 1, literal_execute=True)
    statement = select(*read_columns).where(*conditions).order_by(*ordering).limit(size)
    if offset:
        # Deferred join: the skipped rows are counted in the (sort key, emp_id) index alone, and
        # only the page's rows are read from the table.
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
