"""How far the read replica is behind the primary, checked by one task per worker, so that no
request asks.

Every check notes the primary's WAL position with the time, then asks the replica how far it
has replayed: its lag is the age of the newest noted position it has replayed (0 when it has
replayed the latest one). An idle primary writes nothing new, so an idle replica does not seem
to lag, and a replica that stopped replaying, or lost its primary, does.
"""

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Boolean, column, text

from app.db.reader import Reader
from app.db.statements import Query

logger = logging.getLogger(__name__)

OK = "ok"
LAGGING = "lagging"
UNAVAILABLE = "unavailable"
CHECK_SECONDS = 0.5

# Positions as byte offsets (bigint): asyncpg has no codec of its own for pg_lsn.
FLUSHED = Query(
    text("SELECT (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::bigint AS flushed").columns(
        column("flushed", BigInteger)
    ),
    tuple,
)
REPLAYED = Query(
    text(
        "SELECT pg_is_in_recovery() AS standby, "
        "(pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint AS replayed"
    ).columns(column("standby", Boolean), column("replayed", BigInteger)),
    tuple,
)


class NotAStandbyError(Exception):
    """DATABASE_READ_URL names a server that is not replaying another's WAL."""


@dataclass(frozen=True, slots=True)
class ReplicaState:
    status: str  # OK, LAGGING or UNAVAILABLE
    replayed: int = -1  # WAL position replayed, as a byte offset; -1 unknown
    lag_seconds: float | None = None

    @property
    def serves(self) -> bool:
        return self.status == OK


class ReplicaMonitor:
    """The replica's state as of the last check, every `interval` seconds; a check that takes
    longer than `timeout` finds it unavailable."""

    def __init__(
        self,
        *,
        primary: Reader,
        replica: Reader,
        max_lag: float,
        timeout: float,
        interval: float = CHECK_SECONDS,
        on_replayed: Callable[[int], None] | None = None,
    ) -> None:
        self.primary = primary
        self.replica = replica
        self.max_lag = max_lag
        self.timeout = timeout
        self.interval = interval
        self.on_replayed = on_replayed
        self.state = ReplicaState(UNAVAILABLE)  # until the first check says otherwise
        self.problem: str | None = None  # the last one logged
        self.samples: deque[tuple[float, int]] = deque()  # (when, primary's flushed position)

    async def check(self) -> ReplicaState:
        noted_at = time.monotonic()
        (flushed,) = await self._first(self.primary, FLUSHED)
        standby, replayed = await self._first(self.replica, REPLAYED)
        if not standby or replayed is None:
            raise NotAStandbyError("not a standby (promoted, or the primary itself)")
        self.samples.append((noted_at, int(flushed)))
        lag = self.lag(time.monotonic(), int(replayed))
        return ReplicaState(OK if lag <= self.max_lag else LAGGING, int(replayed), lag)

    async def _first(self, reader: Reader, query: Query[Any]) -> Any:
        row = await reader.first(query)
        assert row is not None  # a SELECT without FROM returns one row
        return row

    def lag(self, now: float, replayed: int) -> float:
        """Seconds since the newest noted position the replica has replayed; the older samples
        are dropped. Replayed none: at least the age of the oldest kept."""
        newest_replayed = None
        for index in range(len(self.samples) - 1, -1, -1):
            if self.samples[index][1] <= replayed:
                newest_replayed = index
                break
        if newest_replayed is None:
            horizon = now - self.max_lag - 10 * self.interval
            while len(self.samples) > 1 and self.samples[0][0] < horizon:
                self.samples.popleft()
            return now - self.samples[0][0]
        for _ in range(newest_replayed):
            self.samples.popleft()
        if len(self.samples) == 1:
            return 0.0
        return now - self.samples[0][0]

    def failed(self) -> None:
        """A read on the replica failed for a connection reason: none go there until a check
        finds it answering again."""
        self.state = ReplicaState(UNAVAILABLE)

    async def run(self) -> None:
        """Check, then wait `interval`, until cancelled."""
        while True:
            await self._check_once()
            await asyncio.sleep(self.interval)

    async def _check_once(self) -> None:
        task = asyncio.ensure_future(self.check())
        try:
            done, _ = await asyncio.wait({task}, timeout=self.timeout)
            if not done:
                self._unavailable(f"no answer within {self.timeout} s")
                # It ends by itself (connect and statement timeouts): one check at a time.
                await asyncio.wait({task})
            error = task.exception()
        except asyncio.CancelledError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            raise
        if error is not None:
            why = str(error) if isinstance(error, NotAStandbyError) else type(error).__name__
            self._unavailable(why)
            return
        state = task.result()
        if state.serves and not self.state.serves:
            logger.info("read replica: serving reads (lag %.1f s)", state.lag_seconds or 0.0)
        elif state.status == LAGGING and self.state.status != LAGGING:
            logger.warning("read replica: lag %.1f s, reads go to the primary", state.lag_seconds)
        self.state = state
        self.problem = None
        if self.on_replayed is not None and state.replayed >= 0:
            self.on_replayed(state.replayed)

    def _unavailable(self, why: str) -> None:
        if why != self.problem:  # logged once, not at every check
            logger.warning("read replica unavailable (%s); reads go to the primary", why)
            self.problem = why
        self.state = ReplicaState(UNAVAILABLE)
