"""`python -m app serve`: uvicorn with the app's settings, its logging and bounded request heads."""

import os
from enum import StrEnum
from typing import Annotated

import typer

from app.cli.common import EXIT_BAD_INPUT, fail
from app.core.config import ConfigurationError, get_settings


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class HttpImplementation(StrEnum):
    httptools = "httptools"
    h11 = "h11"


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
    from app.http.server import BoundedH11Protocol, BoundedHttpToolsProtocol
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
