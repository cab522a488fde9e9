"""Hot statements, compiled once per dialect and run on asyncpg's own connection: SQLAlchemy's
execution layer costs more than PostgreSQL's answer to a key lookup (docs/development.md).
Elsewhere (SQLite) they run through the session; rows and errors are the same either way.

The compiler attributes read here (`positiontup`, `binds`) are not SQLAlchemy's documented API:
`SQLALCHEMY_SERIES` names the series this was written for; tests/test_db_contract.py checks it.
"""

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Dialect, Insert, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Executable

from app.db.driver import raise_translated, session_driver

R = TypeVar("R")
SQLALCHEMY_SERIES = "2.1"


@dataclass(frozen=True, slots=True)
class Compiled:
    sql: str
    names: tuple[str, ...]  # the bound values' names in positional order
    binds: tuple[Callable[[Any], Any] | None, ...]
    results: tuple[Callable[[Any], Any] | None, ...]

    def arguments(self, values: dict[str, Any]) -> list[Any]:
        return [
            values[name] if p is None else p(values[name])
            for name, p in zip(self.names, self.binds, strict=True)
        ]


class Query(Generic[R]):
    """A Core statement with named binds, compiled once per dialect; `row` builds a result row
    (a NamedTuple's `_make`), `postgresql` replaces the statement on PostgreSQL."""

    def __init__(
        self,
        statement: Executable,
        row: Callable[[Sequence[Any]], R],
        *,
        postgresql: Executable | None = None,
    ) -> None:
        self.statement = statement
        self.row = row
        self._statements = {"postgresql": postgresql} if postgresql is not None else {}
        self._compiled: dict[str, Compiled] = {}

    def statement_for(self, dialect: Dialect) -> Executable:
        return self._statements.get(dialect.name, self.statement)

    def compiled(self, dialect: Dialect) -> Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            statement = self.statement_for(dialect)
            done = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
            names = tuple(done.positiontup or ())
            binds = tuple(
                done.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
                for name in names
            )
            results = tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in getattr(statement, "exported_columns", ())
            )
            compiled = Compiled(str(done), names, binds, results)
            self._compiled[dialect.name] = compiled
        return compiled

    def make(self, compiled: Compiled, values: Sequence[Any]) -> R:
        """The caller's row from one driver record."""
        pairs = zip(compiled.results, values, strict=True)
        return self.row([value if p is None else p(value) for p, value in pairs])

    async def first(self, session: AsyncSession, **values: Any) -> R | None:
        """The first row the statement returns in the session's transaction, or None."""
        driven = await self._on_driver(session, "fetchrow", values)
        if driven is None:
            statement = self.statement_for(session.get_bind().dialect)
            row = (await session.execute(statement, values)).first()
            return None if row is None else self.row(tuple(row))
        compiled, record = driven
        return None if record is None else self.make(compiled, record)

    async def all(self, session: AsyncSession, **values: Any) -> list[R]:
        """Every row the statement returns in the session's transaction."""
        driven = await self._on_driver(session, "fetch", values)
        if driven is None:
            statement = self.statement_for(session.get_bind().dialect)
            return [self.row(tuple(row)) for row in await session.execute(statement, values)]
        compiled, records = driven
        return [self.make(compiled, record) for record in records]

    async def execute(self, session: AsyncSession, **values: Any) -> int:
        """Run a statement that returns no rows; how many rows it changed."""
        driven = await self._on_driver(session, "execute", values)
        if driven is None:
            statement = self.statement_for(session.get_bind().dialect)
            result = await session.execute(statement, values)
            return int(result.rowcount)  # type: ignore[attr-defined]
        # "INSERT 0 1", "UPDATE 1", "DELETE 0": the count comes last.
        return int(driven[1].rsplit(" ", 1)[-1])

    async def _on_driver(
        self, session: AsyncSession, method: str, values: dict[str, Any]
    ) -> tuple[Compiled, Any] | None:
        """What asyncpg's `method` returns on the session's connection; None on other drivers."""
        driver, connection = await session_driver(session)
        if driver is None:
            return None
        compiled = self.compiled(connection.dialect)
        prepared = prepared_statements(driver, connection.info)
        try:
            return compiled, await send(driver, method, compiled, values, prepared)
        except OperationalError:
            with contextlib.suppress(Exception):  # lost already: the pool opens a new one
                await connection.invalidate()
            raise


_PREPARED = "app.sql.prepared"  # connection.info key: its unnamed prepared statements, by SQL


def prepared_statements(driver: Any, info: dict[str, Any]) -> dict[str, Any] | None:
    """With asyncpg's statement cache off (DATABASE_POOL_MODE=transaction, app/db/pooling.py),
    the unnamed statements prepared on this connection, by SQL: asyncpg parses one again in the
    round trip of each execution, where a statement sent anew costs a Parse and Describe round
    trip first. None with the cache on: asyncpg's named statements serve. `_stmt_cache_enabled`
    is asyncpg's, not documented: without it, statements are sent anew, as correct."""
    if getattr(driver, "_stmt_cache_enabled", True):
        return None
    prepared: dict[str, Any] = info.setdefault(_PREPARED, {})
    return prepared


async def send(
    driver: Any,
    method: str,
    compiled: Compiled,
    values: dict[str, Any],
    prepared: dict[str, Any] | None = None,
) -> Any:
    """Call asyncpg's `method` with the compiled statement (on its statement from `prepared`,
    when given); its errors as SQLAlchemy's."""
    arguments = compiled.arguments(values)
    try:
        if prepared is None:
            return await getattr(driver, method)(compiled.sql, *arguments)
        statement = prepared.get(compiled.sql)
        if statement is None:
            statement = prepared[compiled.sql] = await driver.prepare(compiled.sql)
        if method == "execute":
            await statement.fetch(*arguments)
            return statement.get_statusmsg()
        return await getattr(statement, method)(*arguments)
    except Exception as error:
        raise_translated(compiled.sql, arguments, error)


def insert_or_skip(session: AsyncSession, table: Table) -> Insert:
    """`INSERT ... ON CONFLICT DO NOTHING` in the session's dialect (PostgreSQL or SQLite)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing()
