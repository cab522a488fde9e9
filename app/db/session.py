"""The request's database handles as dependencies: a write session, a read session, the reader.
`app.middleware.sessions.SessionCloser` closes the sessions once the answer is out.
"""

import contextlib
import logging
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.engine import Database
from app.db.reader import Reader

logger = logging.getLogger(__name__)

SESSIONS = "app.sessions"  # ASGI scope key: the sessions a request opened


def database(request: Request) -> Database:
    db: Database = request.app.state.database
    return db


def open_session(request: Request, sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncSession:
    session = sessionmaker()
    request.scope[SESSIONS].append(session)
    return session


async def get_session(request: Request) -> AsyncSession:
    """A session for a request that writes (or reads what it is about to write)."""
    return open_session(request, database(request).sessions)


async def get_read_session(request: Request) -> AsyncSession:
    """A session for a request that only reads: in autocommit on PostgreSQL."""
    return open_session(request, database(request).read_sessions)


async def get_reader(request: Request) -> Reader:
    return database(request).reader


SessionDep = Annotated[AsyncSession, Depends(get_session)]
ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session)]
ReaderDep = Annotated[Reader, Depends(get_reader)]


async def close_session(session: AsyncSession) -> None:
    # The answer may already be sent when the closing rollback meets a connection the database
    # dropped meanwhile (restart, failover): that must not turn into a dropped response or hide
    # the request's own error. The connection is discarded; the pool opens a new one.
    try:
        await session.close()
    except (DBAPIError, OSError) as error:
        logger.warning("discarding a broken database connection: %s", type(error).__name__)
        with contextlib.suppress(DBAPIError, OSError):
            await session.invalidate()
