"""One worker's streams in one place: the wake-up they wait on, the feed reads they share, the
stop at shutdown, and the count of open streams against the limits.

A wake-up carries nothing: each stream reads the feed from its own last position, so a lost or
repeated notification costs at most one read, never an event. The feed serves a transaction's
events only once no older transaction is still running (app.changes.crud), anywhere on the
PostgreSQL server: an event notified while such a transaction runs is not readable yet, and the
end of that transaction notifies nobody. So a notification is followed by a few more wake-ups
shortly after, and every heartbeat wakes all streams (what another process wrote on SQLite is
seen then too), and while the feed says an event is held back (`held_back`), every half second.
Streams at one position share each read: a wake-up costs one query per position.
"""

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import SQLAlchemyError

from app.changes.events import Change, EventPosition
from app.core.tasks import stop_tasks

Read = Callable[[EventPosition | None, int], Awaitable[list[Change]]]
HeldBack = Callable[[], Awaitable[bool]]
ReadKey = tuple[EventPosition | None, int, int]
# Seconds after a notification at which streams are woken again; then, while an event is still
# held back, every HELD_BACK_SECONDS.
FOLLOW_UPS = (0.02, 0.05, 0.1, 0.2, 0.4, 1.0)
HELD_BACK_SECONDS = 0.5


class Hub:
    """Wakes every waiting stream at once; `generation` counts the wake-ups, so a stream that
    read after seeing generation g and finds it still g knows that no change was announced
    meanwhile (nothing can slip between its read and its wait)."""

    def __init__(self, read: Read, heartbeat: float, held_back: HeldBack) -> None:
        self.heartbeat = heartbeat
        self._held_back = held_back
        self.generation = 0
        self.stopping = False
        self._read = read
        self._woken = asyncio.Event()
        self._reads: dict[ReadKey, asyncio.Future[list[Change]]] = {}
        self._follow_ups: asyncio.Task[None] | None = None
        self._notified_at = 0.0
        self.streams = 0  # open on this worker
        self._ticks: asyncio.Task[None] | None = None
        self._subscribers: list[Callable[[], None]] = []

    def start(self) -> None:
        self._ticks = asyncio.create_task(self._tick())

    async def aclose(self) -> None:
        await stop_tasks(self._ticks, self._follow_ups)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            self.wake()

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call `callback` too when a change commits (the webhook worker), on the worker's one
        listening connection."""
        self._subscribers.append(callback)

    def notified(self) -> None:
        """A change committed: wake the streams now, and again shortly after (while any is
        open; a running follow-up takes the newest notification as its start)."""
        self.wake()
        for callback in self._subscribers:
            callback()
        self._notified_at = asyncio.get_running_loop().time()
        if self.streams and (self._follow_ups is None or self._follow_ups.done()):
            self._follow_ups = asyncio.create_task(self._follow_up())

    async def _follow_up(self) -> None:
        loop = asyncio.get_running_loop()
        for offset in FOLLOW_UPS:
            await asyncio.sleep(max(0.0, self._notified_at + offset - loop.time()))
            self.wake()
        with contextlib.suppress(SQLAlchemyError, OSError):  # the heartbeat wakes them anyway
            while self.streams and await self._held_back():
                await asyncio.sleep(HELD_BACK_SECONDS)
                self.wake()

    def wake(self) -> None:
        self.generation += 1
        self._woken.set()
        self._woken = asyncio.Event()

    def stop(self) -> None:
        """Shutdown: every stream ends now, with a reconnect hint."""
        self.stopping = True
        self.wake()

    async def wait(self, seen: int, seconds: float) -> None:
        """Until a wake-up after generation `seen`, or `seconds`."""
        if self.generation != seen or self.stopping:
            return
        woken = self._woken
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await woken.wait()

    async def read(self, after: EventPosition | None, limit: int) -> list[Change]:
        """The feed after `after`; streams at one position share one read, but only a read that
        began at the current generation (one begun earlier may predate the change)."""
        key: ReadKey = (after, limit, self.generation)
        shared = self._reads.get(key)
        if shared is None:
            shared = self._reads[key] = asyncio.ensure_future(self._read(after, limit))
            shared.add_done_callback(lambda done: self._read_done(key, done))
        return await asyncio.shield(shared)

    def _read_done(self, key: ReadKey, done: asyncio.Future[list[Change]]) -> None:
        self._reads.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have left before it failed


class TooManyStreams(Exception):
    def __init__(self, per_account: bool) -> None:
        super().__init__("per account" if per_account else "per worker")
        self.per_account = per_account


class Registry:
    """Open streams per account and in all, within the worker's limits."""

    def __init__(self, per_account: int, per_worker: int) -> None:
        self.per_account = per_account
        self.per_worker = per_worker
        self.accounts: Counter[uuid.UUID] = Counter()
        self.total = 0

    def open(self, account_id: uuid.UUID) -> None:
        if self.total >= self.per_worker:
            raise TooManyStreams(per_account=False)
        if self.accounts[account_id] >= self.per_account:
            raise TooManyStreams(per_account=True)
        self.accounts[account_id] += 1
        self.total += 1

    def close(self, account_id: uuid.UUID) -> None:
        self.total -= 1
        self.accounts[account_id] -= 1
        if self.accounts[account_id] <= 0:
            del self.accounts[account_id]
