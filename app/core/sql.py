"""The hot statements, run on the database driver's own connection where that driver is asyncpg.

A request's statements are built with SQLAlchemy Core from the tables' typed columns, as every
other statement is; what the hot ones skip is SQLAlchemy's execution layer. On asyncpg that layer
costs several times what PostgreSQL spends answering a primary-key lookup (a greenlet switch, a
lock, cursor emulation and result wrapping per call), and every request runs two or more such
statements. Here each statement is compiled once per dialect and sent with asyncpg's own
prepared-statement cache. Any other driver (SQLite) runs it through the session as usual.

The rows come back as the named tuple a `Query` is given, with the columns' result processing
applied, the same on both paths; driver errors come back as SQLAlchemy's exceptions, so the
handlers and the callers see what they would see from `session.execute`.

A statement in a session marked `POOLED_READS` (autocommit, see `app.core.db`) that has not
opened a transaction borrows a pooled connection for itself and gives it back at once. The
session's own connection would cost several times the statement: a session transaction, an engine
connection and their teardown, for a statement that needs no transaction at all. `PooledReads`
does the same with no session at all, for a request whose only statements are such reads.
"""

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Dialect
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.sql import Executable

from app.core.driver import checkout, raise_translated, session_driver

R = TypeVar("R")
# Session.info key: the session runs in autocommit, so a read outside a transaction may run on
# any pooled connection (set by `app.core.db.create_read_sessionmaker`).
POOLED_READS = "app.sql.pooled_reads"


@dataclass(frozen=True, slots=True)
class PooledReads:
    """Reads without a session: each statement borrows a pooled connection for itself.

    For a request that only reads, and only with `Query`: creating a session would cost more
    than borrowing the connection. asyncpg only, so every statement runs on the driver.
    """

    engine: AsyncEngine


def pooled_reads(engine: AsyncEngine) -> PooledReads | None:
    """Session-less reads on this engine where its driver is asyncpg; None elsewhere."""
    return PooledReads(engine) if engine.dialect.driver == "asyncpg" else None


# Where a read runs: a session, or no session (`PooledReads`).
Reads = AsyncSession | PooledReads


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the bound values' names in positional order
    binds: tuple[Callable[[Any], Any] | None, ...]
    results: tuple[Callable[[Any], Any] | None, ...]


class Query(Generic[R]):
    """A Core statement with named bind parameters, compiled once per dialect.

    `row` builds what a caller gets from the values of one result row (a NamedTuple's `_make`).
    `postgresql` replaces the statement on PostgreSQL (SQL that SQLite lacks, such as LATERAL).
    """

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
        self._compiled: dict[str, _Compiled] = {}

    def statement_for(self, dialect: Dialect) -> Executable:
        return self._statements.get(dialect.name, self.statement)

    def _compile(self, dialect: Dialect) -> _Compiled:
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
            compiled = _Compiled(str(done), names, binds, results)
            self._compiled[dialect.name] = compiled
        return compiled

    def _make(self, compiled: _Compiled, values: Sequence[Any]) -> R:
        pairs = zip(compiled.results, values, strict=True)
        return self.row([value if p is None else p(value) for p, value in pairs])

    async def first(self, reads: Reads, **values: Any) -> R | None:
        """The first row the statement returns, or None."""
        driven = await self._on_driver(reads, "fetchrow", values)
        if driven is None:
            session = _session(reads)
            row = (await session.execute(self._statement(session), values)).first()
            return None if row is None else self.row(tuple(row))
        compiled, record = driven
        return None if record is None else self._make(compiled, record)

    async def all(self, reads: Reads, **values: Any) -> list[R]:
        """Every row the statement returns."""
        driven = await self._on_driver(reads, "fetch", values)
        if driven is None:
            session = _session(reads)
            rows = await session.execute(self._statement(session), values)
            return [self.row(tuple(row)) for row in rows]
        compiled, records = driven
        return [self._make(compiled, record) for record in records]

    async def execute(self, session: AsyncSession, **values: Any) -> int:
        """Run a statement that returns no rows; how many rows it changed."""
        driven = await self._on_driver(session, "execute", values)
        if driven is None:
            result = await session.execute(self._statement(session), values)
            return int(result.rowcount)  # type: ignore[attr-defined]
        # "INSERT 0 1", "UPDATE 1", "DELETE 0": the count comes last.
        return int(driven[1].rsplit(" ", 1)[-1])

    def _statement(self, session: AsyncSession) -> Executable:
        return self.statement_for(session.get_bind().dialect)

    async def _on_driver(
        self, reads: Reads, method: str, values: dict[str, Any]
    ) -> tuple[_Compiled, Any] | None:
        """What asyncpg's `method` returns, on a borrowed pooled connection or the session's
        own, with the statement compiled for it; None on any other driver."""
        if isinstance(reads, PooledReads):
            engine: AsyncEngine | None = reads.engine
        else:
            engine = _pooled_reads_engine(reads)
        if engine is not None:
            compiled = self._compile(engine.dialect)
            pooled = await checkout(engine)
            try:
                return compiled, await _send(pooled.driver_connection, method, compiled, values)
            except OperationalError:
                pooled.invalidate()  # lost: the pool opens a new one
                raise
            finally:
                pooled.close()
        driver, connection = await session_driver(_session(reads))
        if driver is None:
            return None
        compiled = self._compile(connection.dialect)
        try:
            return compiled, await _send(driver, method, compiled, values)
        except OperationalError:
            with contextlib.suppress(Exception):
                await connection.invalidate()
            raise


async def _send(driver: Any, method: str, compiled: _Compiled, values: dict[str, Any]) -> Any:
    arguments = _arguments(compiled, values)
    try:
        return await getattr(driver, method)(compiled.sql, *arguments)
    except Exception as error:
        raise_translated(compiled.sql, arguments, error)


def _arguments(compiled: _Compiled, values: dict[str, Any]) -> list[Any]:
    return [
        values[name] if p is None else p(values[name])
        for name, p in zip(compiled.names, compiled.binds, strict=True)
    ]


def _session(reads: Reads) -> AsyncSession:
    # PooledReads exist for asyncpg only, whose statements all run on the driver.
    assert isinstance(reads, AsyncSession), "PooledReads on a driver other than asyncpg"
    return reads


def _pooled_reads_engine(session: AsyncSession) -> AsyncEngine | None:
    """The asyncpg engine a read may borrow a connection from, if the session allows it."""
    if not session.info.get(POOLED_READS) or session.in_transaction():
        return None
    engine = session.bind
    if not isinstance(engine, AsyncEngine) or engine.dialect.driver != "asyncpg":
        return None
    return engine
