"""Engine, sessions and the reader: built from settings in the app's lifespan, never at import."""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.core.config import Settings
from app.db.pooling import pooler_connect_args
from app.db.reader import Reader, create_reader


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
                **pooler_connect_args(settings),
            },
        }
    if "poolclass" in overrides:  # a pool of another kind (tests): sized its own way
        for sizing in ("pool_size", "max_overflow", "pool_timeout"):
            options.pop(sizing, None)
    engine = create_async_engine(settings.database_url, **(options | overrides))
    if settings.is_sqlite:
        event.listen(engine.sync_engine, "connect", _configure_sqlite)
    else:
        event.listen(engine.sync_engine, "checkout", _replace_closed_connection)
    return engine


def _replace_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled connection the server closed (restart, failover) is replaced before use: asyncpg
    notices the goodbye itself, so this costs none of `pool_pre_ping`'s three round trips."""
    connection = getattr(dbapi_connection, "driver_connection", None)
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
    """Sessions for requests that only read. On PostgreSQL they run in autocommit: a read needs
    no BEGIN and ROLLBACK around its statements, two round trips of the four a lookup took."""
    if engine.dialect.name != "postgresql":
        return create_sessionmaker(engine)
    return async_sessionmaker(
        engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
    )


@dataclass(frozen=True)
class Database:
    """What the app reads and writes through, built once from settings in the lifespan."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    read_sessions: async_sessionmaker[AsyncSession]
    reader: Reader

    @classmethod
    def from_engine(cls, engine: AsyncEngine) -> "Database":
        read_sessions = create_read_sessionmaker(engine)
        reader = create_reader(engine, read_sessions)
        return cls(engine, create_sessionmaker(engine), read_sessions, reader)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> "Database":
        return cls.from_engine(create_engine(settings, **overrides))
