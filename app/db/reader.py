"""The reader seam, chosen once when the app starts: with asyncpg each read borrows a pooled
connection for its one statement (no session, no transaction); elsewhere a short session.
"""

from typing import Any, Protocol, TypeVar

from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.driver import checkout
from app.db.statements import Query, prepared_statements, send

R = TypeVar("R")


class Reader(Protocol):
    async def first(self, query: Query[R], **values: Any) -> R | None: ...

    async def all(self, query: Query[R], **values: Any) -> list[R]: ...


class PooledReader:
    """asyncpg: each statement on a pooled connection of its own, no session, no transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def first(self, query: Query[R], **values: Any) -> R | None:
        compiled, record = await self._fetch(query, "fetchrow", values)
        return None if record is None else query.make(compiled, record)

    async def all(self, query: Query[R], **values: Any) -> list[R]:
        compiled, records = await self._fetch(query, "fetch", values)
        return [query.make(compiled, record) for record in records]

    async def _fetch(self, query: Query[Any], method: str, values: dict[str, Any]) -> Any:
        compiled = query.compiled(self.engine.dialect)
        pooled = await checkout(self.engine)
        driver = pooled.driver_connection
        try:
            prepared = prepared_statements(driver, pooled.info)
            return compiled, await send(driver, method, compiled, values, prepared)
        except OperationalError:
            pooled.invalidate()  # lost: the pool opens a new one
            raise
        finally:
            pooled.close()


class SessionReader:
    """Any driver: each statement in a short session of its own."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def first(self, query: Query[R], **values: Any) -> R | None:
        async with self.sessionmaker() as session:
            return await query.first(session, **values)

    async def all(self, query: Query[R], **values: Any) -> list[R]:
        async with self.sessionmaker() as session:
            return await query.all(session, **values)


def create_reader(engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]) -> Reader:
    if engine.dialect.driver == "asyncpg":
        return PooledReader(engine)
    return SessionReader(sessionmaker)
