"""Data commands of `python -m app`: import-csv, export-csv and check (seed-demo: `demo.py`).

They read DATABASE_URL only (check reads the whole configuration); progress goes to stderr, so
`export-csv` can write the CSV to stdout. Writes carry audit rows by a system actor (`cli:...`).
"""

import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit.models import SystemActor
from app.core.config import ConfigurationError, Settings, describe_validation_error
from app.core.db import create_engine, create_sessionmaker
from app.core.errors import ConflictError
from app.core.types import INT32_MAX
from app.employees import counting, csv_format, csv_io
from app.employees.csv_format import Row, RowError
from app.employees.models import EmployeeCreate, SortField, SortOrder
from app.health import checks

if TYPE_CHECKING:
    from typer._click._termui_impl import ProgressBar

EXIT_UNAVAILABLE = 1
EXIT_BAD_INPUT = 2
SHOWN_ERRORS = 50
T = TypeVar("T")


class CommandError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(code)


def run(job: Callable[[], T]) -> T:
    """Run a command's body; a refused input or an unreachable database is a clean exit."""
    try:
        return job()
    except CommandError as error:
        raise fail(str(error), error.code) from None
    except ConfigurationError as error:
        raise fail(str(error), EXIT_BAD_INPUT) from None
    except (DBAPIError, OSError) as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        raise fail(
            "the database is unreachable or not migrated (run `alembic upgrade head`): "
            f"{type(error).__name__}: {reason}",
            EXIT_UNAVAILABLE,
        ) from None


@asynccontextmanager
async def database() -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    from app.cli import database_settings, require_sqlite_file  # app.cli imports this module

    settings = database_settings()
    require_sqlite_file(settings)
    engine = create_engine(settings)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


def progressbar(length: int, label: str) -> "ProgressBar[int]":
    return typer.progressbar(length=length, label=label, file=sys.stderr)


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
        # Pass 1 checks every row, holding only the emp_ids seen; pass 2 reads the file again
        # and inserts it in batches, all in one transaction.
        with open_file() as handle, progressbar(size, "Checking") as bar:
            items = csv_format.read_rows(csv_format.decode_lines(tracked(handle, bar.update)))
            validation = await csv_io.validate(session=session, items=items, keep_rows=False)
        if validation.error_total:
            report_errors(validation)
            raise CommandError(f"{validation.error_total} errors; nothing was written", 2)
        if dry_run:
            return f"All {validation.count} rows are valid; nothing was written (--dry-run)."
        with open_file() as handle, progressbar(validation.count, "Importing") as bar:
            rows = valid_rows(csv_format.read_rows(csv_format.decode_lines(handle)))
            try:
                created = await csv_io.write_all(
                    session=session,
                    batches=csv_io.batched(rows),
                    actor=SystemActor("cli:import-csv"),
                    progress=bar.update,
                )
            except ConflictError as error:
                raise CommandError(error.detail, EXIT_UNAVAILABLE) from None
    return f"Imported {created} employees."


def report_errors(validation: csv_io.Validation) -> None:
    for error in validation.errors[:SHOWN_ERRORS]:
        where = f"line {error.line}" + (f", {error.field}" if error.field else "")
        typer.echo(f"{where}: {error.message}", err=True)
    if validation.error_total > SHOWN_ERRORS:
        typer.echo(f"... and {validation.error_total - SHOWN_ERRORS} more errors", err=True)


def import_csv(
    file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV file to import."),
    ],
    dry_run: Annotated[bool, typer.Option(help="Only check the file; write nothing.")] = False,
) -> None:
    """Create employees from a CSV file: every row is checked, then all are written or none."""

    def job() -> None:
        message = asyncio.run(
            import_rows(lambda: file.open("rb"), file.stat().st_size, dry_run=dry_run)
        )
        typer.echo(message)

    run(job)


# --- export-csv ----------------------------------------------------------------------------


async def export_rows(
    output: IO[bytes],
    *,
    city: str | None,
    country: str | None,
    sort_by: SortField,
    order: SortOrder,
) -> int:
    async with database() as sessionmaker:
        async with sessionmaker() as session:
            total, _ = await counting.count_employees(
                session=session, city=city, country=country, exact_up_to=INT32_MAX
            )
        written = 0
        output.write(csv_format.format_header().encode())
        batches = csv_io.read_batches(
            sessionmaker, city=city, country=country, sort_by=sort_by, order=order
        )
        with progressbar(total, "Exporting") as bar:
            async for employees in batches:
                output.write(csv_format.format_rows(employees).encode())
                written += len(employees)
                bar.update(len(employees))
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
            return asyncio.run(
                export_rows(handle, city=city, country=country, sort_by=sort_by, order=order)
            )

        if output is None:
            count = export(sys.stdout.buffer)
        else:
            with output.open("wb") as handle:
                count = export(handle)
        typer.echo(f"Exported {count} employees.", err=True)

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
    from app.cli import require_sqlite_file

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
