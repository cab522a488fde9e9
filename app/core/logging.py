"""Logging: every logger (app, uvicorn, SQLAlchemy) through one structlog renderer, JSON lines or
a console line coloured only on a terminal (not with NO_COLOR); each line in a request carries
its `request_id`. Each worker configures itself in its lifespan.
"""

import logging
import os
import sys
from typing import TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from app.core.config import Settings
from app.core.context import request_id_var

# Fields the access-log middleware passes in `extra=`, lifted into the rendered event.
ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "user_id")
# uvicorn's own loggers: their handlers are dropped so that their lines reach ours instead.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class _AppHandler(logging.StreamHandler[TextIO]):
    """The handler this module installs (configuring again replaces only it).

    Without a stream of its own it writes to whatever `sys.stdout` is at the time.
    """

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream if stream is not None else sys.stdout)
        self.follow_stdout = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self.follow_stdout:
            self.stream = sys.stdout
        super().emit(record)


def add_request_id(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    request_id = request_id_var.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


def use_colors(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


def _renderer(log_format: str, stream: TextIO) -> list[Processor]:
    if log_format == "console":
        return [structlog.dev.ConsoleRenderer(colors=use_colors(stream))]
    return [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """(Re)configure the root logger and structlog; safe to call more than once."""
    shared: list[Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(allow=ACCESS_FIELDS),
        add_request_id,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *_renderer(settings.log_format, stream if stream is not None else sys.stdout),
        ],
    )
    handler = _AppHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    # Other handlers (a test runner's capture, say) are left in place; only ours is replaced.
    for old in [h for h in root.handlers if isinstance(h, _AppHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
        uvicorn_logger.setLevel(logging.NOTSET)
    # The access-log middleware writes one richer line per request (route template, user id).
    logging.getLogger("uvicorn.access").disabled = True
