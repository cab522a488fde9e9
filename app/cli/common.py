"""What every command shares: clean exits for refused input and an unreachable database, and
the database, reached through DATABASE_URL alone (no signing key is needed to run them)."""

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import (
    ConfigurationError,
    DatabaseSettings,
    Settings,
    describe_validation_error,
)
from app.db.engine import create_engine, create_sessionmaker

if TYPE_CHECKING:
    from typer._click._termui_impl import ProgressBar

EXIT_UNAVAILABLE = 1
EXIT_BAD_INPUT = 2
T = TypeVar("T")


class CommandError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class BadInput(CommandError):
    """The operator's input is refused; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_BAD_INPUT)


def plural(count: int, one: str, many: str | None = None) -> str:
    """`1 employee`, `2 employees`; `many` where the plural is not `one` + "s"."""
    return f"{count} {one if count == 1 else many or one + 's'}"


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


def database_settings() -> Settings:
    # The engine needs the database and pool settings only; the signing key is not read, so
    # building Settings without validation (defaults for the rest) is safe here.
    try:
        database = DatabaseSettings()
    except ValidationError as error:
        lines = describe_validation_error(error).splitlines()[1:]
        raise ConfigurationError("; ".join(line.strip() for line in lines)) from None
    # The pool mode too: through PgBouncer in transaction pooling asyncpg must not cache
    # statements, for the commands as for the server.
    return Settings.model_construct(**database.model_dump())


def require_sqlite_file(settings: Settings) -> None:
    # SQLite would create an empty file at a mistyped path and then report a missing table.
    database = make_url(settings.database_url).database
    if settings.is_sqlite and database and database != ":memory:" and not Path(database).exists():
        raise FileNotFoundError(f"no database file at {database}")


@asynccontextmanager
async def database() -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    settings = database_settings()
    require_sqlite_file(settings)
    engine = create_engine(settings)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


def progressbar(length: int, label: str) -> "ProgressBar[int]":
    return typer.progressbar(length=length, label=label, file=sys.stderr)
