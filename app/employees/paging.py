"""Keyset cursors for the employee list: the sort key and `emp_id` of the last row served."""

from datetime import date
from typing import Any

from app.core.pagination import InvalidCursorError, decode_cursor, encode_cursor
from app.core.types import INT32_MAX
from app.employees.models import SortField, SortOrder

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
