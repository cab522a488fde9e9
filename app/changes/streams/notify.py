"""What wakes the streams when a change commits.

PostgreSQL: one LISTEN connection per worker on the feed's channel, on which every worker and
replica announces the changes its requests commit (app.changes.streams.announce), and the
command line its imports. The connection goes past PgBouncer (`session_url`), since LISTEN is
session state. When it drops, it is opened again with a growing pause; every (re)connection
wakes all streams, which then read what they missed.

SQLite (one process): the engine itself tells; a commit of a connection that inserted into the
audit trail wakes the streams, a read's commit does not.
"""

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.changes.events import CHANNEL
from app.changes.streams.hub import Hub
from app.core.tasks import stop_tasks

logger = logging.getLogger(__name__)

FIRST_PAUSE = 0.1
LONGEST_PAUSE = 5.0
# A connection that went silent without a goodbye (lost network) is found by a probe this often.
PROBE_SECONDS = 30.0
# connection.info keys: this transaction wrote the trail; a transaction that did has committed.
_WROTE = "app.changes.wrote_audit"
_COMMITTED = "app.changes.committed_audit"


def listen_dsn(url: str) -> str:
    """asyncpg's own form of an SQLAlchemy URL (`postgresql+asyncpg://` -> `postgresql://`)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PgListener:
    def __init__(self, hub: Hub, dsn: str, connect_timeout: float) -> None:
        self.hub = hub
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self.connected = asyncio.Event()  # set while listening (tests wait for it)
        self.connection: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def aclose(self) -> None:
        await stop_tasks(self._task)

    async def _run(self) -> None:
        pause = FIRST_PAUSE
        while True:
            try:
                await self._listen()
                pause = FIRST_PAUSE
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
                logger.warning("change notifications: %s; listening again", type(error).__name__)
                await asyncio.sleep(pause)
                pause = min(pause * 2, LONGEST_PAUSE)

    async def _listen(self) -> None:
        connection = await asyncpg.connect(self.dsn, timeout=self.connect_timeout)
        lost = asyncio.Event()
        try:
            connection.add_termination_listener(lambda _: lost.set())
            await connection.add_listener(CHANNEL, self._notified)
            self.connection = connection
            self.connected.set()
            self.hub.notified()  # what was committed while nobody listened (and follow-ups)
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PROBE_SECONDS):
                        await lost.wait()
                if not lost.is_set():
                    await connection.execute("SELECT 1", timeout=self.connect_timeout)
            logger.warning("change notifications: the listening connection was closed")
        finally:
            self.connected.clear()
            self.connection = None
            with contextlib.suppress(Exception):
                await connection.close(timeout=1)

    def _notified(self, *_: Any) -> None:
        self.hub.notified()


class LocalNotifier:
    """Engine events: flag a connection that inserts into the audit trail, mark its commit, and
    wake the streams once the connection is handed back to the pool. SQLAlchemy's `commit`
    event comes before the database's commit: a stream woken then could read too early."""

    def __init__(self, hub: Hub, engine: AsyncEngine) -> None:
        self.hub = hub
        self.engine = engine.sync_engine
        self.loop: asyncio.AbstractEventLoop | None = None
        self._events = (
            ("before_cursor_execute", self._statement),
            ("commit", self._commit),
            ("rollback", self._rollback),
            ("checkin", self._checkin),
        )

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        for name, listener in self._events:
            event.listen(self.engine, name, listener)

    async def aclose(self) -> None:
        for name, listener in self._events:
            event.remove(self.engine, name, listener)

    def _statement(self, connection: Connection, _c: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO employee_audit"):
            connection.info[_WROTE] = True

    def _commit(self, connection: Connection) -> None:
        if connection.info.pop(_WROTE, False):
            connection.info[_COMMITTED] = True

    def _rollback(self, connection: Connection) -> None:
        connection.info.pop(_WROTE, None)

    def _checkin(self, _dbapi_connection: Any, record: Any) -> None:
        if record.info.pop(_COMMITTED, False) and self.loop is not None:
            self.loop.call_soon_threadsafe(self.hub.notified)
