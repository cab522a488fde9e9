"""Admin commands: `python -m app create-admin USERNAME`; the server: `python -m app serve`.

`create-admin` reads only DATABASE_URL, so it runs where the API's secrets are not available.
"""

import asyncio
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.engine import make_url

from app.auth import crud as token_crud
from app.core.config import ConfigurationError, DatabaseSettings, Settings, get_settings
from app.core.db import create_engine, create_sessionmaker
from app.core.errors import ConflictError
from app.core.security import hash_password
from app.core.types import utc_now
from app.employees import commands as data_commands
from app.employees import demo
from app.employees.commands import EXIT_BAD_INPUT, CommandError, fail, run
from app.idempotency import crud as idempotency_crud
from app.users import crud
from app.users.models import User, UserCreate, Username

cli = typer.Typer(
    help="Administration commands for the employee records API.",
    no_args_is_help=True,
    add_completion=False,
)


@cli.callback()
def main() -> None:
    """Administration commands for the employee records API (reads DATABASE_URL)."""


# Data commands, kept with the employee code (app/employees/demo.py and commands.py).
cli.command("seed-demo")(demo.seed_demo)
cli.command("import-csv")(data_commands.import_csv)
cli.command("export-csv")(data_commands.export_csv)
cli.command("check")(data_commands.check)


class BadInput(CommandError):
    """The operator's input is refused; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_BAD_INPUT)


def check_username(username: str) -> str:
    try:
        return TypeAdapter(Username).validate_python(username)
    except ValidationError:
        raise BadInput(
            "the username must be 3 to 50 characters: letters, digits, '.', '_' or '-'"
        ) from None


def check_password(username: str, password: str) -> str:
    try:
        return UserCreate(username=username, password=password).password
    except ValidationError as error:
        (issue,) = error.errors(include_input=False, include_url=False)
        message = issue["msg"].removeprefix("Value error, ")
        raise BadInput(f"the password is refused: {message}") from None


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


def database_settings() -> Settings:
    # The engine needs the database and pool settings only; the signing key is not read, so
    # building Settings without validation (defaults for the rest) is safe here.
    try:
        url = DatabaseSettings().database_url
    except ValidationError as error:
        raise ConfigurationError(
            "DATABASE_URL: must be a postgresql:// or sqlite:// URL"
        ) from error
    return Settings.model_construct(database_url=url)


def require_sqlite_file(settings: Settings) -> None:
    # SQLite would create an empty file at a mistyped path and then report a missing table.
    database = make_url(settings.database_url).database
    if settings.is_sqlite and database and database != ":memory:" and not Path(database).exists():
        raise FileNotFoundError(f"no database file at {database}")


async def _create_admin(username: str, *, from_stdin: bool, reset_password: bool) -> str:
    settings = database_settings()
    require_sqlite_file(settings)
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            user = await crud.get_user_by_username(session=session, username=username)
            if user is None:
                password = check_password(username, read_password(from_stdin))
                hashed = await hash_password(password)
                try:
                    await crud.create_user(
                        session=session, username=username, hashed_password=hashed, is_admin=True
                    )
                except ConflictError:
                    raise BadInput(f"{username!r} was created meanwhile; run again") from None
                return f"Created admin {username!r}."
            hashed_new = None
            if reset_password:
                password = check_password(user.username, read_password(from_stdin))
                hashed_new = await hash_password(password)
            action = describe_promotion(user, reset=hashed_new is not None)
            await crud.promote_to_admin(session=session, user=user, hashed_password=hashed_new)
            return action
    finally:
        await engine.dispose()


def describe_promotion(user: User, *, reset: bool) -> str:
    done = []
    if not user.is_admin:
        done.append("promoted to admin")
    if not user.is_active:
        done.append("reactivated")
    if reset:
        done.append("password reset, existing sessions ended")
    if not done:
        return f"{user.username!r} is already an active admin; nothing changed."
    return f"Existing account {user.username!r}: {', '.join(done)}."


@cli.command("create-admin")
def create_admin(
    username: Annotated[
        str,
        typer.Argument(metavar="USERNAME", help="Account name (3..50 of letters, digits, ._-)."),
    ],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    reset_password: Annotated[
        bool,
        typer.Option("--reset-password", help="Also set a new password on an existing account."),
    ] = False,
) -> None:
    """Create an admin account, or promote and reactivate an existing one (any letter case)."""
    checked = run(lambda: check_username(username))
    message = run(
        lambda: asyncio.run(
            _create_admin(checked, from_stdin=password_stdin, reset_password=reset_password)
        )
    )
    typer.echo(message)


async def _purge_expired() -> tuple[int, int]:
    settings = database_settings()
    require_sqlite_file(settings)
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            now = utc_now()
            tokens = await token_crud.delete_expired_refresh_tokens(session=session, now=now)
            keys = await idempotency_crud.delete_expired_keys(session=session, now=now)
            return tokens, keys
    finally:
        await engine.dispose()


@cli.command("purge-expired")
def purge_expired() -> None:
    """Delete every account's expired refresh tokens and idempotency keys (run it daily).

    Sign-ins and writes delete their own account's; this catches accounts that went quiet.
    """
    tokens, keys = run(lambda: asyncio.run(_purge_expired()))
    typer.echo(f"Deleted {tokens} expired refresh tokens and {keys} expired idempotency keys.")


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class HttpImplementation(StrEnum):
    httptools = "httptools"
    h11 = "h11"


@cli.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(min=1, max=64, envvar="WEB_CONCURRENCY", help="Worker processes."),
    ] = 1,
    log_level: Annotated[
        LogLevel, typer.Option(envvar="LOG_LEVEL", help="Log level of the app and uvicorn.")
    ] = LogLevel.info,
    access_log: Annotated[
        bool,
        typer.Option(envvar="ACCESS_LOG", help="One log line per request (at the info level)."),
    ] = True,
    http: Annotated[
        HttpImplementation,
        typer.Option(help="HTTP/1.1 parser: httptools (faster) or h11 (pure Python)."),
    ] = HttpImplementation.httptools,
) -> None:
    """Run the API with uvicorn; on SIGTERM in-flight requests get SHUTDOWN_DRAIN_SECONDS."""
    import uvicorn

    from app.core.logging import configure_logging
    from app.core.protocols import BoundedH11Protocol, BoundedHttpToolsProtocol
    from app.observability.metrics import multiprocess_directory

    # Workers read their settings from the environment: the options reach them that way.
    os.environ["LOG_LEVEL"] = log_level.value
    os.environ["ACCESS_LOG"] = str(access_log).lower()
    try:
        settings = get_settings()  # refuse a bad configuration before any worker starts
    except ConfigurationError as error:
        raise fail(str(error), EXIT_BAD_INPUT) from None
    configure_logging(settings)
    # --proxy-headers trusts X-Forwarded-* only from FORWARDED_ALLOW_IPS (default: localhost).
    # log_config=None: uvicorn's lines go through app/core/logging.py; the access line too.
    with multiprocess_directory(workers):
        uvicorn.run(
            "app.main:app",
            host=host,
            port=port,
            workers=workers,
            proxy_headers=True,
            timeout_graceful_shutdown=settings.shutdown_drain_seconds,
            log_config=None,
            log_level=log_level.value,
            access_log=False,
            # Both bound the request head: its size (this limit) and its arrival time.
            http=BoundedH11Protocol if http is HttpImplementation.h11 else BoundedHttpToolsProtocol,
            h11_max_incomplete_event_size=settings.max_header_bytes,
        )
