"""Announcing committed changes to every worker and replica (PostgreSQL): after a request that
wrote to the change log is answered, this worker sends one NOTIFY on the feed's channel. While
one is on its way, more writes make one more after it, not one each: at most one at a time per
worker and one every `INTERVAL`, however fast the writes come, and none inside a writer's
transaction (app.changes.crud `announce` says why). A notification only wakes listeners up;
one lost delays, never loses.
"""

import asyncio
import logging

from sqlalchemy.exc import SQLAlchemyError

from app.changes.crud import announce
from app.core.tasks import stop_tasks
from app.db.engine import Database

logger = logging.getLogger(__name__)

PAUSE_AFTER_FAILURE = 1.0
# Under a stream of writes, what a change may wait for its announcement (a few per cent of the
# streams' latency target): every NOTIFY takes PostgreSQL's one notification lock.
INTERVAL = 0.01


class Announcer:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.due = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def announce(self) -> None:
        """Changes committed: the next NOTIFY goes as soon as the one on its way is sent."""
        self.due.set()

    async def aclose(self) -> None:
        await stop_tasks(self._task)

    async def _run(self) -> None:
        failing = False
        loop = asyncio.get_running_loop()
        while True:
            await self.due.wait()
            self.due.clear()
            sent_at = loop.time()
            try:
                async with self.db.sessions() as session:
                    await announce(session=session)
                failing = False
                await asyncio.sleep(max(0.0, sent_at + INTERVAL - loop.time()))
            except (SQLAlchemyError, OSError) as error:
                if not failing:  # once until it works again; heartbeats and polls cover it
                    logger.warning("could not announce changes: %s", type(error).__name__)
                failing = True
                self.due.set()
                await asyncio.sleep(PAUSE_AFTER_FAILURE)
