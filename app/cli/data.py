"""Data commands: import-csv, export-csv and check. Progress goes to stderr (export-csv writes
the CSV to stdout); writes carry audit rows by a system actor (`cli:...`).
"""

import asyncio
import functools
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Annotated

import typer
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.changes.crud import announce
from app.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_UNAVAILABLE,
    CommandError,
    database,
    fail,
    plural,
    progressbar,
    require_sqlite_file,
    run,
)
from app.core.config import Settings, describe_validation_error
from app.core.errors import ConflictError
from app.core.types import INT32_MAX
from app.db.driver import session_driver
from app.db.engine import create_engine, create_sessionmaker
from app.db.reads import in_session
from app.employees import counting, crud
from app.employees.csv import copy_out, staging
from app.employees.csv import format as csv_format
from app.employees.csv import io as csv_io
from app.employees.csv.format import Row, RowError
from app.employees.history.models import SystemActor
from app.employees.models import EmployeeCreate, ListFilters, SortField, SortOrder
from app.health import checks

SHOWN_ERRORS = 50


# --- import-csv ----------------------------------------------------------------------------


def tracked(handle: IO[bytes], update: Callable[[int], None]) -> Iterator[bytes]:
    for line in handle:
        update(len(line))
        yield line


def valid_rows(items: Iterable[Row | RowError]) -> Iterator[EmployeeCreate]:
    for item in items:
        if isinstance(item, RowError):
            raise CommandError("the file changed during the import; nothing was written", 2)
        yield item.data


async def import_rows(open_file: Callable[[], IO[bytes]], size: int, *, dry_run: bool) -> str:
    async with database() as sessionmaker, sessionmaker() as session:
        if await staging.supports_copy(session):
            count = await import_by_copy(session, open_file, size, dry_run=dry_run)
            if count and not dry_run:
                await announce(session=session)  # to the servers' streams and webhooks
            return imported(count, dry_run=dry_run)
        # Pass 1 checks every row, holding only the emp_ids seen; pass 2 reads the file again
        # and inserts it in batches, all in one transaction.
        with open_file() as handle, progressbar(size, "Checking") as bar:
            items = csv_format.read_rows(csv_format.decode_lines(tracked(handle, bar.update)))
            validation = await csv_io.validate(session=session, items=items, keep_rows=False)
        if validation.error_total:
            report_errors(validation)
            errors = plural(validation.error_total, "error")
            raise CommandError(f"{errors}; nothing was written", EXIT_BAD_INPUT)
        if dry_run:
            return imported(validation.count, dry_run=True)
        with open_file() as handle, progressbar(validation.count, "Importing") as bar:
            rows = valid_rows(csv_format.read_rows(csv_format.decode_lines(handle)))
            try:
                created = await crud.insert_all(
                    session=session,
                    batches=csv_io.batched(rows),
                    actor=SystemActor("cli:import-csv"),
                    progress=bar.update,
                )
            except ConflictError as error:
                raise CommandError(error.detail, EXIT_UNAVAILABLE) from None
    return imported(created, dry_run=False)


async def import_by_copy(
    session: AsyncSession, open_file: Callable[[], IO[bytes]], size: int, *, dry_run: bool
) -> int:
    """PostgreSQL: one pass, the file streamed by COPY into a staging table and checked there."""
    with open_file() as handle, progressbar(size, "Loading") as bar:
        cells = csv_format.read_cells(csv_format.decode_lines(tracked(handle, bar.update)))
        try:
            return await staging.import_cells(
                session=session, items=cells, actor=SystemActor("cli:import-csv"), dry_run=dry_run
            )
        except csv_io.ImportRejectedError as rejected:
            report_errors(rejected.validation)
            errors = plural(rejected.validation.error_total, "error")
            raise CommandError(f"{errors}; nothing was written", EXIT_BAD_INPUT) from None
        except ConflictError as error:
            raise CommandError(error.detail, EXIT_UNAVAILABLE) from None


def imported(count: int, *, dry_run: bool) -> str:
    if dry_run:
        valid = "The 1 row is" if count == 1 else f"All {count} rows are"
        return f"{valid} valid; nothing was written (--dry-run)."
    return f"Imported {plural(count, 'employee')}."


def report_errors(validation: csv_io.Validation) -> None:
    for error in validation.errors[:SHOWN_ERRORS]:
        where = f"line {error.line}" + (f", {error.field}" if error.field else "")
        typer.echo(f"{where}: {error.message}", err=True)
    if validation.error_total > SHOWN_ERRORS:
        more = plural(validation.error_total - SHOWN_ERRORS, "more error")
        typer.echo(f"... and {more}", err=True)


def import_csv(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE", exists=True, dir_okay=False, readable=True, help="CSV file to import."
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only check the file; write nothing.")
    ] = False,
) -> None:
    """Create employees from a CSV file: every row is checked, then all are written or none."""

    def job() -> None:
        message = asyncio.run(
            import_rows(lambda: file.open("rb"), file.stat().st_size, dry_run=dry_run)
        )
        typer.echo(message)

    run(job)


# --- export-csv ----------------------------------------------------------------------------


async def export_rows(output: IO[bytes], filters: ListFilters) -> int:
    async with database() as sessionmaker:
        async with sessionmaker() as session:
            total, _ = await counting.count_employees(
                session=session, city=filters.city, country=filters.country, exact_up_to=INT32_MAX
            )
        with progressbar(total, "Exporting") as bar:
            async with sessionmaker() as session:
                driver, _ = await session_driver(session)
                if driver is not None:  # PostgreSQL: one COPY, streamed

                    async def write(chunk: bytes) -> None:
                        output.write(chunk)
                        bar.update(chunk.count(b"\n"))

                    return await copy_out.copy_csv(driver, filters, write)
            return await export_batches(output, sessionmaker, filters, bar.update)


async def export_batches(
    output: IO[bytes],
    sessionmaker: async_sessionmaker[AsyncSession],
    filters: ListFilters,
    progress: Callable[[int], None],
) -> int:
    written = 0
    output.write(csv_format.format_header().encode())
    pages = functools.partial(in_session, sessionmaker)
    async for employees in csv_io.read_batches(pages, filters):
        output.write(csv_format.format_rows(employees).encode())
        written += len(employees)
        progress(len(employees))
    return written


def export_csv(
    city: Annotated[
        str | None, typer.Option(help="Case-insensitive substring of the city.")
    ] = None,
    country: Annotated[
        str | None, typer.Option(help="Case-insensitive substring of the country.")
    ] = None,
    sort_by: Annotated[SortField, typer.Option(help="Sort key.")] = SortField.emp_id,
    order: Annotated[SortOrder, typer.Option(help="Sort direction.")] = SortOrder.asc,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", dir_okay=False, help="File (default: stdout).")
    ] = None,
) -> None:
    """Write the employees as CSV (same filters and sort as the API's list), streamed in batches."""

    def job() -> None:
        def export(handle: IO[bytes]) -> int:
            return asyncio.run(export_rows(handle, ListFilters(city, country, sort_by, order)))

        if output is None:
            count = export(sys.stdout.buffer)
        else:
            with output.open("wb") as handle:
                count = export(handle)
        typer.echo(f"Exported {plural(count, 'employee')}.", err=True)

    run(job)


# --- check ---------------------------------------------------------------------------------


async def readiness(settings: Settings) -> checks.Readiness:
    engine = create_engine(settings)
    try:
        within = settings.health_check_timeout
        return await checks.check_readiness(create_sessionmaker(engine), within=within)
    finally:
        await engine.dispose()


def check() -> None:
    """Check the configuration, the database connection and the migrations (exit 0 when all OK)."""
    try:
        settings = Settings()  # type: ignore[call-arg]  # read afresh, not the cached copy
    except ValidationError as error:
        lines = describe_validation_error(error).splitlines()
        raise fail("; ".join(line.strip() for line in lines[1:]), EXIT_BAD_INPUT) from None
    try:
        require_sqlite_file(settings)
    except FileNotFoundError as error:
        raise fail(str(error), EXIT_UNAVAILABLE) from None
    state = asyncio.run(readiness(settings))
    if state.database != checks.OK:
        raise fail("the database is unreachable", EXIT_UNAVAILABLE)
    if state.migrations != checks.OK:
        raise fail(
            "the database schema is not at the head revision (run `alembic upgrade head`)", 1
        )
    typer.echo("OK: configuration valid, database reachable, migrations at head.")
