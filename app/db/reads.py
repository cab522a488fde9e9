"""What a read-only request (a list, a history, an export) reads through: the primary's read
sessions, or the replica's when it serves the caller, with the primary's behind them.
"""

import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.replica import Replica, replica_of
from app.db.session import close_session, database, open_session

T = TypeVar("T")


class Reads:
    """One request's reads: on the replica if it served the caller when the request came
    (`reads_for`), else on the primary. A read the replica fails is read again on the primary."""

    def __init__(self, request: Request, replica: Replica | None) -> None:
        self.request = request
        self.replica = replica

    async def run(self, read: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """`read` in a session closed once the answer is out (a page of the list, history)."""
        if self.replica is not None and self.replica.available():
            try:
                return await read(open_session(self.request, self.replica.database.read_sessions))
            except Exception as error:
                if not self.replica.fell_over(error):
                    raise
        return await read(open_session(self.request, database(self.request).read_sessions))

    def on_replica(self) -> bool:
        """Whether this request's reads go to the replica (it serves the caller right now)."""
        return self.replica is not None and self.replica.available()

    async def each(self, read: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """`read` in a session of its own, closed at once (an export's pages: a slow download
        holds no connection between them)."""
        if self.replica is not None and self.replica.available():
            try:
                return await in_session(self.replica.database.read_sessions, read)
            except Exception as error:
                if not self.replica.fell_over(error):
                    raise
        return await in_session(database(self.request).read_sessions, read)


async def in_session(
    sessionmaker: async_sessionmaker[AsyncSession], read: Callable[[AsyncSession], Awaitable[T]]
) -> T:
    """`read` in a new session, closed once it is done."""
    session = sessionmaker()
    try:
        return await read(session)
    finally:
        await close_session(session)


async def reads_for(request: Request, user_id: uuid.UUID) -> Reads:
    """The account's reads for this request: the replica serves it unless it is unavailable,
    lags, or has not replayed the account's last write yet."""
    replica = replica_of(request)
    if replica is not None and not await replica.serves(user_id):
        replica = None
    return Reads(request, replica)
