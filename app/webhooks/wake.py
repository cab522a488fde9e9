"""Wakes the webhook worker when a change commits: PostgreSQL's NOTIFY on the change feed's
channel, on one listening connection of its own. Only a hint: the worker still polls, so a lost
notification or a dropped connection (reconnected after a pause) delays a delivery, never
loses one. Without PostgreSQL (or behind PgBouncer in transaction pooling without
DATABASE_DIRECT_URL) the worker simply polls."""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from app.changes.events import CHANNEL
from app.core.config import ConfigurationError, Settings

logger = logging.getLogger(__name__)

RECONNECT_SECONDS = 5.0


def listen_dsn(settings: Settings) -> str | None:
    """Where to LISTEN (asyncpg's form), or None when there is no PostgreSQL session to ask."""
    if settings.is_sqlite:
        return None
    try:
        url = settings.session_url("webhook notifications (LISTEN)")
    except ConfigurationError:
        return None
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def setter(event: asyncio.Event) -> Callable[..., None]:
    """A callback of asyncpg's that sets the event, whatever it is called with."""
    return lambda *_: event.set()


async def listen(dsn: str, wake: asyncio.Event, connect_seconds: float) -> None:
    """Set `wake` on every notification, for as long as the task runs."""
    warned = False
    while True:
        connection: Any = None
        try:
            connection = await asyncpg.connect(dsn, timeout=connect_seconds)
            warned = False
            lost = asyncio.Event()
            connection.add_termination_listener(setter(lost))
            await connection.add_listener(CHANNEL, setter(wake))
            wake.set()  # what committed while no one listened
            await lost.wait()
        except (OSError, asyncpg.PostgresError, TimeoutError) as error:
            if not warned:  # once until it connects again; the worker polls meanwhile
                logger.warning("webhook notifications unavailable: %s", type(error).__name__)
            warned = True
        finally:
            if connection is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(connection.close(timeout=connect_seconds))
        await asyncio.sleep(RECONNECT_SECONDS)
