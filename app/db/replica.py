"""The read replica (DATABASE_READ_URL): which reads it serves, the primary in its place when it
cannot, and the write positions that keep an account's reads on the primary until the replica
has replayed its writes. Built in the lifespan; absent (None) without DATABASE_READ_URL.
"""

import asyncio
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import Request
from sqlalchemy import BigInteger, column, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.errors import is_unavailable
from app.db.engine import Database, create_engine
from app.db.reader import PooledReader, Reader
from app.db.replica_state import ReplicaMonitor
from app.db.replica_writes import MemoryWriteLog, RedisWriteLog, WriteLog, WriteLogUnavailable
from app.db.statements import Query
from app.observability.metrics import count_replica_fallback

logger = logging.getLogger(__name__)

A = TypeVar("A")
B = TypeVar("B")
T = TypeVar("T")

# Why a read went to the primary (besides the monitor's "lagging" and "unavailable"): the
# `reason` label of db_replica_fallbacks_total.
READ_YOUR_WRITES = "read_your_writes"
FAILED = "error"
NO_WRITE_LOG = "redis_unavailable"

# Where the primary's WAL ends once a write has committed: at or past the commit.
INSERTED = Query(
    text("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint AS inserted").columns(
        column("inserted", BigInteger)
    ),
    tuple,
)
# The primary did not say: the account reads from it until the entry expires.
UNKNOWN_POSITION = 2**63 - 1
# A standby cancels a query whose rows its replay must remove (a recovery conflict).
RECOVERY_CONFLICT = "40001"


def replica_failure(error: BaseException) -> bool:
    """Whether a read failed because of the replica (unreachable, gone, in conflict with its
    replay), so that the primary may answer it instead."""
    if isinstance(error, DBAPIError):
        sqlstate = getattr(error.orig, "sqlstate", None) or ""
        return is_unavailable(error) or sqlstate == RECOVERY_CONFLICT
    return isinstance(error, OSError | TimeoutError)


class Replica:
    """The replica's `Database`, the monitor of its lag, and the accounts' last writes."""

    def __init__(
        self,
        database: Database,
        *,
        primary: Database,
        monitor: ReplicaMonitor,
        writes: WriteLog,
        positions: Reader,
        engines: tuple[AsyncEngine, ...] = (),
    ) -> None:
        self.database = database
        self.primary = primary
        self.monitor = monitor
        self.writes = writes
        self.positions = positions  # asks the primary where its WAL ends
        self.engines = (database.engine, *engines)  # closed with it

    async def serves(self, user_id: uuid.UUID) -> bool:
        """Whether the account's reads may go to the replica now; if not, why is counted."""
        return self.available() and await self.has_replayed_writes_of(user_id)

    def available(self) -> bool:
        """Whether the replica serves reads at all: it answers, within its lag limit (as of
        the last check, or since a read found it failing)."""
        state = self.monitor.state
        if not state.serves:
            count_replica_fallback(state.status)
        return state.serves

    async def has_replayed_writes_of(self, user_id: uuid.UUID) -> bool:
        """Whether the replica has replayed the account's last write (with Redis, one round
        trip); if not, why is counted."""
        try:
            pending = await self.writes.pending(user_id, self.monitor.state.replayed)
        except WriteLogUnavailable:
            count_replica_fallback(NO_WRITE_LOG)
            return False
        if pending:
            count_replica_fallback(READ_YOUR_WRITES)
        return not pending

    async def read(self, read: Callable[[Reader], Awaitable[T]]) -> T:
        """`read` with the replica's reader; with the primary's if the replica fails it."""
        if self.available():
            try:
                return await read(self.database.reader)
            except Exception as error:
                if not self.fell_over(error):
                    raise
        return await read(self.primary.reader)

    def fell_over(self, error: Exception) -> bool:
        """Whether the primary should answer what failed on the replica: then no read goes
        there until the monitor finds it answering again."""
        if not replica_failure(error):
            return False
        if self.monitor.state.serves:
            logger.warning("read replica failed a read (%s); reads go to the primary", error)
        self.monitor.failed()
        count_replica_fallback(FAILED)
        return True

    async def record_write(self, user_id: uuid.UUID) -> None:
        """Note where the primary's WAL ends after the account's write has committed."""
        try:
            row = await self.positions.first(INSERTED)
            position = UNKNOWN_POSITION if row is None else int(row[0])
        except (DBAPIError, OSError, TimeoutError, PoolTimeoutError):
            position = UNKNOWN_POSITION
        await self.writes.record(user_id, position)

    def start(self) -> "asyncio.Task[None]":
        """The monitor's checks, one task per worker, until cancelled."""
        return asyncio.create_task(self.monitor.run())

    async def aclose(self) -> None:
        await self.writes.aclose()
        for engine in self.engines:
            await engine.dispose()


def open_replica(settings: Settings, primary: Database) -> Replica | None:
    """The replica that DATABASE_READ_URL names, or None; connects only when first used."""
    if settings.database_read_url is None:
        return None
    replica_settings = settings.model_copy(update={"database_url": settings.database_read_url})
    database = Database.from_settings(replica_settings)
    # The checks have a connection to each server of their own: a pool busy with requests must
    # not make them late, and the replica seem down, when the load is highest. So do the write
    # positions: a write asks for one while its request still holds a pooled connection, and
    # a pool all held that way would wait on itself. Writes take turns on it (one short
    # statement each); one that waits too long pins its account to the primary for a while.
    watch_primary = create_engine(settings, pool_size=1, max_overflow=0)
    watch_replica = create_engine(replica_settings, pool_size=1, max_overflow=0)
    positions = create_engine(settings, pool_size=1, max_overflow=0, pool_timeout=2)
    # Past this, a write is replayed, or the replica lags past its limit and serves no read
    # (the state requests see is at most a check interval plus a check's timeout old).
    keep = settings.replica_max_lag_seconds + settings.health_check_timeout + 3
    writes: WriteLog
    if settings.redis_url is None:
        writes = MemoryWriteLog(keep)
    else:
        writes = RedisWriteLog(
            settings.redis_url, key_prefix=settings.redis_key_prefix, keep_seconds=math.ceil(keep)
        )
    monitor = ReplicaMonitor(
        primary=PooledReader(watch_primary),
        replica=PooledReader(watch_replica),
        max_lag=settings.replica_max_lag_seconds,
        timeout=settings.health_check_timeout,
        on_replayed=writes.forget_replayed,
    )
    return Replica(
        database,
        primary=primary,
        monitor=monitor,
        writes=writes,
        positions=PooledReader(positions),
        engines=(watch_primary, watch_replica, positions),
    )


def replica_of(request: Request) -> Replica | None:
    replica: Replica | None = request.app.state.replica
    return replica


async def alongside(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Both at once (`first` as a task of its own). An error is raised once both are done: a
    query is not abandoned halfway on its connection."""
    task = asyncio.ensure_future(first)
    try:
        other = await second
    except asyncio.CancelledError:
        task.cancel()
        raise
    except BaseException:
        await asyncio.wait({task})
        if not task.cancelled():
            task.exception()  # retrieved: the error raised is the second's
        raise
    return await task, other
