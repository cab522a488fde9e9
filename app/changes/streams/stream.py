"""One open stream, whatever carries it (SSE or WebSocket): a pump that reads the feed from the
stream's own last position into a bounded buffer whenever the hub wakes it, and checks the
caller's credentials again every heartbeat; a delivery loop that sends what the buffer holds;
and the reason it ended.
"""

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.websockets import WebSocketDisconnect

from app.accounts.access import Principal
from app.changes.events import Change, EventPosition, feed_item
from app.changes.streams.hub import Hub
from app.core.errors import AppError

logger = logging.getLogger(__name__)

PAGE = 100
CLIENT_GONE = (OSError, WebSocketDisconnect)
# What a delivery may take once the stream has ended (a reconnect hint, a close frame).
LAST_WORDS_SECONDS = 1.0

Admit = Callable[[], Awaitable[Principal]]
Hidden = Callable[[Principal], tuple[str, ...]]
SendItem = Callable[[Change, dict[str, Any]], Awaitable[None]]
SendBeat = Callable[[], Awaitable[None]]


class Ended(Enum):
    revoked = "credentials no longer valid"
    slow = "client too slow"
    stopping = "server restarting"
    unavailable = "database unavailable"
    gone = "client disconnected"


class ChangeStream:
    def __init__(
        self,
        *,
        hub: Hub,
        principal: Principal,
        position: EventPosition | None,
        admit: Admit,
        hidden: Hidden,
        heartbeat: float,
        buffer: int,
    ) -> None:
        self.hub = hub
        self.principal = principal
        self.position = position
        self.admit = admit
        self.hidden_for = hidden
        self.hidden = hidden(principal)
        self.heartbeat = heartbeat
        self.buffer = buffer
        self.page = min(PAGE, buffer)
        self.items: deque[Change] = deque()
        self.taken = asyncio.Event()  # the client took an item from the buffer
        self.check_at = 0.0
        self.ready = asyncio.Event()
        self.beat_due = False
        self.ended: Ended | None = None
        self.finished = asyncio.Event()

    def end(self, reason: Ended) -> None:
        if self.ended is None:
            self.ended = reason
        self.ready.set()
        self.finished.set()

    async def run(self, send_item: SendItem, send_beat: SendBeat, gone: Awaitable[None]) -> Ended:
        """Deliver until the stream ends (the delivery is cut short then: a slow client's send
        may never return); `gone` completes when the client leaves."""
        tasks = [
            asyncio.ensure_future(self._pump()),
            asyncio.ensure_future(self._deliver(send_item, send_beat)),
            asyncio.ensure_future(gone),
            asyncio.ensure_future(self.finished.wait()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for outcome in outcomes[:2]:
            if isinstance(outcome, Exception):
                # A send to a client that left raises; anything else is a bug.
                if not isinstance(outcome, CLIENT_GONE):
                    logger.error("a change stream failed", exc_info=outcome)
                self.end(Ended.gone)
        self.end(Ended.gone)  # the client left (unless the stream had ended already)
        assert self.ended is not None
        return self.ended

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        self.check_at = loop.time() + self.heartbeat
        read_now = True
        while self.ended is None:
            seen = self.hub.generation
            if self.hub.stopping:
                self.end(Ended.stopping)
                return
            if read_now and not await self._fill():
                return
            if not await self._checkpoint():
                return
            await self.hub.wait(seen, self.check_at - loop.time())
            read_now = self.hub.generation != seen

    async def _checkpoint(self) -> bool:
        """Once a heartbeat: the credentials again, and a heartbeat for the client."""
        now = asyncio.get_running_loop().time()
        if now < self.check_at:
            return True
        if not await self._still_admitted():
            return False
        self.check_at = now + self.heartbeat
        self.beat_due = True
        self.ready.set()
        return True

    async def _fill(self) -> bool:
        """Read until the feed has no more for now. A page goes in only when the buffer has
        room for it: a client catching up on a long backlog gets it as fast as it reads (the
        backlog stays in the database); one that takes nothing for a heartbeat is too slow."""
        while True:
            if self.buffer - len(self.items) < self.page and not await self._room():
                self.end(Ended.slow)
                return False
            try:
                changes = await self.hub.read(self.position, self.page)
            except (SQLAlchemyError, OSError) as error:
                logger.warning("a change stream could not read the feed: %s", type(error).__name__)
                self.end(Ended.unavailable)
                return False
            if changes:
                self.items.extend(changes)
                self.position = changes[-1].position
                self.ready.set()
            if len(changes) < self.page or self.ended is not None:
                return True
            if not await self._checkpoint():
                return False

    async def _room(self) -> bool:
        """Whether the client makes room for a page, taking something at least once a
        heartbeat."""
        while self.buffer - len(self.items) < self.page:
            self.taken.clear()
            try:
                async with asyncio.timeout(self.heartbeat):
                    await self.taken.wait()
            except TimeoutError:
                return False
            if self.ended is not None:
                return False
        return True

    async def _still_admitted(self) -> bool:
        try:
            principal = await self.admit()
        except AppError:
            self.end(Ended.revoked)
            return False
        except (SQLAlchemyError, OSError) as error:
            logger.warning("a change stream could not check credentials: %s", type(error).__name__)
            self.end(Ended.unavailable)
            return False
        if principal.role is not self.principal.role:
            self.principal, self.hidden = principal, self.hidden_for(principal)
        return True

    async def _deliver(self, send_item: SendItem, send_beat: SendBeat) -> None:
        while self.ended is None:
            await self.ready.wait()
            self.ready.clear()
            while self.items and self.ended is None:
                change = self.items.popleft()
                self.taken.set()
                await send_item(change, feed_item(change, self.hidden))
            if self.beat_due and self.ended is None:
                self.beat_due = False
                await send_beat()


async def last_words(send: Callable[[], Awaitable[None]]) -> None:
    """A final frame, if the client takes it within a second (a slow one may not)."""
    with contextlib.suppress(TimeoutError, OSError):
        async with asyncio.timeout(LAST_WORDS_SECONDS):
            await send()
