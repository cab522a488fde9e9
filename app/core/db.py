"""Engine and session: built from settings in the app's lifespan, never at import."""

import contextlib
import logging
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.config import Settings
from app.core.sql import POOLED_READS

logger = logging.getLogger(__name__)


def create_engine(settings: Settings, **overrides: Any) -> AsyncEngine:
    options: dict[str, Any] = {"echo": settings.sql_echo}
    if settings.is_sqlite:
        # sqlite3's busy timeout: a writer waits for another instead of failing at once.
        options["connect_args"] = {"timeout": settings.db_pool_timeout}
    else:
        options |= {
            "pool_size": settings.db_pool_size,
            "max_overflow": settings.db_max_overflow,
            "pool_timeout": settings.db_pool_timeout,
            # asyncpg's command_timeout bounds every statement on the client side: it also ends
            # the wait when the server is stopped (SIGSTOP, lost network).
            "connect_args": {
                "timeout": settings.db_connect_timeout,
                "command_timeout": settings.db_statement_timeout,
            },
        }
    engine = create_async_engine(settings.database_url, **(options | overrides))
    if settings.is_sqlite:
        event.listen(engine.sync_engine, "connect", _configure_sqlite)
    else:
        event.listen(engine.sync_engine, "checkout", _replace_closed_connection)
    return engine


def _replace_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Detect a pooled connection the server closed (restart, failover) before it is used.

    asyncpg marks a connection closed as soon as the event loop reads the server's goodbye, so
    checking that flag finds what `pool_pre_ping` finds without its three round trips (BEGIN,
    a query, ROLLBACK) on every checkout. DisconnectionError makes the pool discard the
    connection and hand out another.
    """
    connection = getattr(dbapi_connection, "_connection", None)
    if connection is not None and connection.is_closed():
        raise DisconnectionError()


def _configure_sqlite(dbapi_connection: Any, _: Any) -> None:
    # SQLite's own lower() folds ASCII only; Python's folds every script, as PostgreSQL's does.
    dbapi_connection.create_function("lower", 1, _unicode_lower, deterministic=True)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _unicode_lower(value: str | None) -> str | None:
    return value.lower() if isinstance(value, str) else value


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def create_read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for GET requests. On PostgreSQL they run in autocommit: a read needs no
    BEGIN and ROLLBACK around its statements, two round trips of the four a lookup took; and
    the hot reads (`app.core.sql.Query`) borrow a pooled connection just for their statement."""
    if engine.dialect.name != "postgresql":
        return create_sessionmaker(engine)
    return async_sessionmaker(
        engine.execution_options(isolation_level="AUTOCOMMIT"),
        expire_on_commit=False,
        info={POOLED_READS: True},
    )


SAFE_METHODS = frozenset({"GET", "HEAD"})


_SESSIONS = "app.sessions"  # ASGI scope key: the sessions a request opened


class SessionCloser:
    """Close every session a request opened once it is answered (pure ASGI middleware).

    A dependency with `yield` would do the same at a cost FastAPI pays on every request (an exit
    stack, a cancel scope, a context manager): about a tenth of a small read.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sessions: list[AsyncSession] = []
        scope[_SESSIONS] = sessions
        try:
            await self.app(scope, receive, send)
        finally:
            for session in sessions:
                # A session that never began a transaction holds no connection and no objects
                # (a GET's pooled reads borrow their connection elsewhere): nothing to close.
                if session.in_transaction():
                    await close_session(session)


async def get_session(request: Request) -> AsyncSession:
    """The request's session; `SessionCloser` closes it after the answer."""
    state = request.app.state
    sessionmaker: async_sessionmaker[AsyncSession] = state.sessionmaker
    if request.method in SAFE_METHODS:
        sessionmaker = getattr(state, "read_sessionmaker", sessionmaker)
    session = sessionmaker()
    request.scope[_SESSIONS].append(session)
    return session


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


SessionDep = Annotated[AsyncSession, Depends(get_session)]
