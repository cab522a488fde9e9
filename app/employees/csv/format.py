"""The employees' CSV format: RFC 4180, UTF-8, the header `emp_id,emp_name,city,country,emp_dob`;
rows obey `EmployeeCreate` and errors name the line a record starts on. A cell starting with
`=`, `+`, `-` or `@` is written after an apostrophe (no formula runs when a spreadsheet opens it)
and read back without it (docs/api.md).
"""

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import Row as Record

from app.employees.models import EmployeeCreate

HEADER = ("emp_id", "emp_name", "city", "country", "emp_dob")
# What spreadsheets run as a formula (tab and carriage return too; the models refuse those).
FORMULA_STARTS = frozenset("=+-@\t\r")


def neutralise(value: str) -> str:
    """The cell as written: an apostrophe before a formula (and before an apostrophe that
    precedes one, so that `restore` can tell the two apart)."""
    return "'" + value if value.lstrip("'")[:1] in FORMULA_STARTS else value


def restore(value: str) -> str:
    """The value a cell holds: `neutralise` undone."""
    return value[1:] if value[:1] == "'" and value.lstrip("'")[:1] in FORMULA_STARTS else value


@dataclass(frozen=True)
class RowError:
    line: int
    field: str | None
    message: str
    type: str


@dataclass(frozen=True)
class Row:
    line: int
    data: EmployeeCreate


@dataclass(frozen=True)
class Cells:
    """A record as the file holds it: five values, apostrophes before formulas taken off."""

    line: int
    values: list[str]


def decode_lines(lines: Iterable[bytes]) -> Iterator[str]:
    """UTF-8 text line by line, so that a bad byte is reported on its own line."""
    for line in lines:
        yield line.decode("utf-8")


def read_rows(lines: Iterable[str]) -> Iterator[Row | RowError]:
    """Each record checked on its own: a valid `Row`, or one `RowError` per bad field."""
    for item in read_cells(lines):
        yield from (item,) if isinstance(item, RowError) else _check(item)


def read_cells(lines: Iterable[str]) -> Iterator[Cells | RowError]:
    """Each record's values, unchecked; a `RowError` for a bad header, a record of the wrong
    width, and the unreadable record that ends the file."""
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader)
    except (StopIteration, csv.Error, UnicodeDecodeError):
        header = []
    if [name.strip().removeprefix("\ufeff") for name in header] != list(HEADER):
        expected = ",".join(HEADER)
        yield RowError(1, None, f"the first line must be the header {expected}", "csv_header")
        return
    previous = reader.line_num
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as error:
            # Past a broken quote or a bad byte the record boundaries are unknown: stop here.
            reason = "not UTF-8" if isinstance(error, UnicodeDecodeError) else str(error)
            yield RowError(previous + 1, None, f"unreadable CSV: {reason}", "csv_syntax")
            return
        line, previous = previous + 1, reader.line_num
        if not values:
            continue  # a blank line
        if len(values) != len(HEADER):
            message = f"expected {len(HEADER)} fields, found {len(values)}"
            yield RowError(line, None, message, "csv_columns")
            continue
        yield Cells(line, [restore(value) for value in values])


def _check(cells: Cells) -> Iterator[Row | RowError]:
    line = cells.line
    try:
        data = dict(zip(HEADER, cells.values, strict=True))
        yield Row(line, EmployeeCreate.model_validate(data))
    except ValidationError as error:
        for item in error.errors(include_input=False, include_url=False):
            name = str(item["loc"][0]) if item["loc"] else None
            yield RowError(line, name, item["msg"].removeprefix("Value error, "), item["type"])


def columns_shown(hidden: Sequence[str] = ()) -> tuple[str, ...]:
    """The export's columns without the `hidden` ones (app.employees.privacy)."""
    return tuple(name for name in HEADER if name not in hidden)


def format_header(columns: Sequence[str] = HEADER) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(columns)
    return buffer.getvalue()


def format_rows(employees: Sequence[Record[Any]], columns: Sequence[str] = HEADER) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for employee in employees:
        values = (getattr(employee, name) for name in columns)
        writer.writerow([neutralise(v) if isinstance(v, str) else v for v in values])
    return buffer.getvalue()
