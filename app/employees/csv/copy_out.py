"""The export on PostgreSQL: one `COPY (SELECT ...) TO STDOUT` streamed as it comes, the same
bytes as `format.format_rows` writes (tests/test_csv_copy.py compares them).

The SELECT puts the apostrophe before a formula (as `format.neutralise`) and writes the date as
YYYY-MM-DD whatever the server's DateStyle; COPY quotes as Python's csv writer does, but ends a
record with LF where the writer uses CRLF: `CrlfRecords` puts the CR back.

The formula check looks at a value's first character before anything else: most values start
with none of those characters, and a regular expression on every value would cost the export
more than the COPY itself.
"""

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, case, func, literal, select
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from app.employees.crud import employee_table
from app.employees.csv import format as csv_format
from app.employees.listing import list_filters, sort_keys
from app.employees.models import ListFilters

# A bulk statement runs as long as the table needs: the pool's per-statement timeout is sized
# for one lookup or one page.
BULK_TIMEOUT = 3600.0
# `format.FORMULA_STARTS` as a PostgreSQL bracket expression ("-" last: a literal there), and
# the characters a value to neutralise can start with (those, or an apostrophe).
FORMULA_PATTERN = "^[=+@\t\r-]"
FIRST_CODES = sorted(ord(char) for char in csv_format.FORMULA_STARTS | {"'"})


def _neutralised(column: ColumnElement[Any]) -> ColumnElement[Any]:
    formula = func.ltrim(column, "'").regexp_match(FORMULA_PATTERN)
    checked = case((formula, literal("'") + column), else_=column)
    # Nested, so that the cheap test decides first.
    return case((func.ascii(column).in_(FIRST_CODES), checked), else_=column)


def _exported(name: str, iso_dates: bool) -> ColumnElement[Any]:
    column = employee_table.c[name]
    if name == "emp_id":
        return column
    if name == "emp_dob":
        return column if iso_dates else func.to_char(column, "YYYY-MM-DD")
    return _neutralised(column)


def export_query(
    filters: ListFilters,
    *,
    iso_dates: bool = False,
    columns: Sequence[str] = csv_format.HEADER,
) -> tuple[str, list[Any]]:
    """The SELECT the export copies (`columns`, in the header's order), in list order, and its
    arguments. `iso_dates`: the connection's DateStyle writes dates as YYYY-MM-DD already
    (to_char costs a little)."""
    statement = (
        select(*(_exported(name, iso_dates) for name in columns))
        .where(*list_filters(filters.city, filters.country))
        .order_by(*sort_keys(filters.sort_by, filters.order))
    )
    compiled = statement.compile(
        dialect=asyncpg_dialect(),  # type: ignore[no-untyped-call]
        compile_kwargs={"render_postcompile": True},
    )
    return compiled.string, [compiled.params[name] for name in compiled.positiontup or ()]


class CrlfRecords:
    """COPY's CSV with CRLF at the end of each record: a LF outside quotes ends one (a field's
    quotes come in pairs, doubled ones included, so an odd count so far means inside one)."""

    def __init__(self) -> None:
        self.quoted = False
        self.records = 0

    def __call__(self, chunk: bytes) -> bytes:
        if not self.quoted and b'"' not in chunk:
            self.records += chunk.count(b"\n")
            return chunk.replace(b"\n", b"\r\n")
        out = bytearray()
        for number, piece in enumerate(chunk.split(b"\n")):
            if number:
                out += b"\n" if self.quoted else b"\r\n"
                self.records += not self.quoted
            out += piece
            if piece.count(b'"') % 2:
                self.quoted = not self.quoted
        return bytes(out)


async def copy_csv(
    driver: Any,
    filters: ListFilters,
    write: Callable[[bytes], Awaitable[None]],
    columns: Sequence[str] = csv_format.HEADER,
) -> int:
    """Write the header and every matching record (`columns` of each) to `write` as COPY sends
    them (it waits for each write: a slow reader slows the query down, nothing piles up). The
    records written."""
    date_style = str(getattr(driver.get_settings(), "DateStyle", ""))
    iso_dates = date_style.startswith("ISO")
    sql, arguments = export_query(filters, iso_dates=iso_dates, columns=columns)
    records = CrlfRecords()

    async def sink(chunk: bytes) -> None:
        await write(records(bytes(chunk)))

    await write(csv_format.format_header(columns).encode())
    await driver.copy_from_query(sql, *arguments, output=sink, format="csv", timeout=BULK_TIMEOUT)
    return records.records
