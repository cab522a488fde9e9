"""The import on PostgreSQL: the file's records are copied (`COPY`) into a temporary staging
table, checked there set-wise by the rules of `EmployeeCreate`, then written with their audit
rows in one statement. Answers are those of `io.validate` (tests/test_csv_copy.py compares them).

Python parses the CSV (the same reader as elsewhere) and sends each value as it is, with two
exceptions: an emp_id that is not plain digits and a date not written YYYY-MM-DD go through
pydantic's own parser, which accepts spellings ("+7", "1985-12-10T00:00:00") that SQL would
judge differently; the rules themselves (ranges, lengths, control characters, blanks, dates,
duplicates, stored emp_ids) are SQL.
"""

import functools
import re
import sys
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from typing import Any

import asyncpg
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import ConflictError
from app.core.types import INT32_MAX, TEXT_MAX_LENGTH, PositiveInt32, Text100, utc_now
from app.db.change_log import note_changes
from app.db.driver import session_driver, transaction
from app.employees import crud
from app.employees.csv import io as csv_io
from app.employees.csv import staging_sql as sql
from app.employees.csv.format import Cells, RowError
from app.employees.history.models import Actor, SystemActor
from app.employees.models import EARLIEST_BIRTH_DATE, BirthDate

# A bulk statement runs as long as the file needs: the pool's per-statement timeout is sized
# for one lookup or one page.
BULK_TIMEOUT = 3600.0

_EMP_ID = TypeAdapter(PositiveInt32)
_TEXT = TypeAdapter(Text100)
_BIRTH_DATE = TypeAdapter(BirthDate)
_DIGITS = re.compile(r"[0-9]{1,10}")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# What `reject_control_characters` refuses (Unicode category Cc), NUL aside: PostgreSQL text
# cannot hold it, so it is sent as U+0001, refused with the same message.
CONTROL_PATTERN = "[\x01-\x1f\x7f-\x9f]"


def _error(adapter: TypeAdapter[Any], value: Any) -> tuple[str, str]:
    """The type and message pydantic gives `value`: the SQL checks answer with these."""
    try:
        adapter.validate_python(value)
    except ValidationError as error:
        item = error.errors(include_input=False, include_url=False)[0]
        return item["type"], item["msg"].removeprefix("Value error, ")
    raise AssertionError(f"{value!r} is valid")


@functools.cache
def rules() -> dict[str, tuple[str, str]]:
    """Each SQL check's code, with the error type and message of the field rule it applies."""
    return {
        "too_low": _error(_EMP_ID, 0),
        "too_high": _error(_EMP_ID, INT32_MAX + 1),
        "too_short": _error(_TEXT, ""),
        "too_long": _error(_TEXT, "x" * (TEXT_MAX_LENGTH + 1)),
        "control": _error(_TEXT, "\x01"),
        "blank": _error(_TEXT, " "),
        "too_early": _error(_BIRTH_DATE, EARLIEST_BIRTH_DATE - timedelta(days=1)),
        "future": _error(_BIRTH_DATE, date.max),
    }


@functools.cache
def whitespace() -> str:
    """What `str.strip()` takes off: the same characters are trimmed in SQL."""
    return "".join(char for char in map(chr, range(sys.maxunicode + 1)) if char.isspace())


def _parsed(adapter: TypeAdapter[Any], raw: str) -> tuple[Any, str | None, str | None]:
    try:
        return adapter.validate_python(raw), None, None
    except ValidationError as error:
        item = error.errors(include_input=False, include_url=False)[0]
        return None, item["type"], item["msg"].removeprefix("Value error, ")


def _emp_id(raw: str) -> tuple[Any, str | None, str | None]:
    return (int(raw), None, None) if _DIGITS.fullmatch(raw) else _parsed(_EMP_ID, raw)


def _emp_dob(raw: str) -> tuple[Any, str | None, str | None]:
    if _ISO_DATE.fullmatch(raw):
        try:
            return date.fromisoformat(raw), None, None
        except ValueError:
            pass
    return _parsed(_BIRTH_DATE, raw)


def staging_records(items: Iterable[Cells | RowError]) -> Iterator[tuple[Any, ...]]:
    """One staging row per record, in `sql.STAGING_COLUMNS` order."""
    for item in items:
        if isinstance(item, RowError):
            yield (item.line, item.type, item.message, *(None,) * 9)
            continue
        emp_id, name, city, country, emp_dob = item.values
        id_value, *id_error = _emp_id(emp_id)
        dob_value, *dob_error = _emp_dob(emp_dob)
        texts = (text.replace("\x00", "\x01") for text in (name, city, country))
        yield (item.line, None, None, id_value, *texts, dob_value, *id_error, *dob_error)


def _row_error(record: Any, max_rows: int | None) -> RowError:
    line, field, code, message = record["line"], record["field"], record["code"], record["message"]
    if code == "duplicate_in_file":
        return csv_io.duplicate_in_file(line, record["emp_id"], record["other"])
    if code == "already_exists":
        return csv_io.already_exists(line, record["emp_id"])
    if code == "too_many_rows" and max_rows is not None:
        return csv_io.too_many_rows(line, max_rows)
    if message is None:
        code, message = rules()[code]
    return RowError(line, field, message, code)


async def check(driver: Any, *, max_rows: int | None) -> csv_io.Validation:
    """The staged file's errors, as `io.validate` would list them (the first
    `MAX_REPORTED_ERRORS` in the order it met them, then sorted by line) and its row count."""
    arguments = (
        INT32_MAX,
        EARLIEST_BIRTH_DATE,
        utc_now().date(),
        CONTROL_PATTERN,
        whitespace(),
        sql.NO_LIMIT if max_rows is None else max_rows,
        csv_io.BATCH_SIZE,
        csv_io.MAX_REPORTED_ERRORS,
    )
    records = await driver.fetch(sql.CHECK, *arguments, timeout=BULK_TIMEOUT)
    result = csv_io.Validation(count=records[0]["valid"], error_total=records[0]["total"])
    listed = (record for record in records if record["line"] is not None)
    result.errors = [_row_error(record, max_rows) for record in listed]
    result.finish()
    return result


async def import_cells(
    *,
    session: AsyncSession,
    items: Iterable[Cells | RowError],
    actor: Actor | SystemActor,
    max_rows: int | None = None,
    dry_run: bool = False,
) -> int:
    """Check a file and write it whole, or raise `ImportRejectedError` (bad rows) or
    `ConflictError` (a concurrent writer took an emp_id) with nothing written. The session must
    be on asyncpg (`supports_copy`). The rows written, or with `dry_run` the rows checked."""
    driver, _ = await session_driver(session)
    if not dry_run:
        note_changes(session)
    async with transaction(session):
        await driver.execute(sql.CREATE_STAGING, timeout=BULK_TIMEOUT)
        await driver.copy_records_to_table(
            sql.STAGING,
            records=staging_records(items),
            columns=sql.STAGING_COLUMNS,
            timeout=BULK_TIMEOUT,
        )
        validation = await check(driver, max_rows=max_rows)
        if validation.error_total:
            raise csv_io.ImportRejectedError(validation)
        if dry_run:
            return validation.count
        now = utc_now()
        try:
            await driver.execute(
                sql.WRITE,
                now,
                actor.user_id,
                actor.username,
                actor.request_id,
                whitespace(),
                timeout=BULK_TIMEOUT,
            )
        except (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError):
            # The unique key decides: a writer that took an emp_id after the check wins (or,
            # two imports waiting on each other's emp_ids, the one PostgreSQL lets go on).
            raise ConflictError(crud.TAKEN_MEANWHILE) from None
    if validation.count >= crud.ANALYZE_AFTER_ROWS:
        # The list's totals and plans use these statistics; autovacuum may be late, or off.
        await driver.execute(sql.ANALYZE, timeout=BULK_TIMEOUT)
    return validation.count


async def supports_copy(session: AsyncSession) -> bool:
    """Whether the session's connection is asyncpg's (PostgreSQL), which can COPY."""
    driver, _ = await session_driver(session)
    return driver is not None
