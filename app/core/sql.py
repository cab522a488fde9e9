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
connection and their teardown, for a statement that needs no transaction at all.
"""

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, TypeVar

import asyncpg
from sqlalchemy import Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import Executable

R = TypeVar("R")
_DRIVER = "app.sql.driver"  # connection.info key: its asyncpg connection, once looked up
# Session.info key: the session runs in autocommit, so a read outside a transaction may run on
# any pooled connection (set by `app.core.db.create_read_sessionmaker`).
POOLED_READS = "app.sql.pooled_reads"


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

    async def first(self, session: AsyncSession, **values: Any) -> R | None:
        """The first row the statement returns, or None."""
        driven = await self._on_driver(session, "fetchrow", values)
        if driven is None:
            row = (await session.execute(self._statement(session), values)).first()
            return None if row is None else self.row(tuple(row))
        compiled, record = driven
        return None if record is None else self._make(compiled, record)

    async def all(self, session: AsyncSession, **values: Any) -> list[R]:
        """Every row the statement returns."""
        driven = await self._on_driver(session, "fetch", values)
        if driven is None:
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
        self, session: AsyncSession, method: str, values: dict[str, Any]
    ) -> tuple[_Compiled, Any] | None:
        """What asyncpg's `method` returns, on a borrowed pooled connection or the session's
        own, with the statement compiled for it; None on any other driver."""
        engine = _pooled_reads_engine(session)
        if engine is not None:
            compiled = self._compile(engine.dialect)
            pooled = await _checkout(engine)
            try:
                return compiled, await _send(pooled.driver_connection, method, compiled, values)
            except OperationalError:
                pooled.invalidate()  # lost: the pool opens a new one
                raise
            finally:
                pooled.close()
        driver, connection = await _driver(session)
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
        _raise_translated(compiled.sql, arguments, error)


def _arguments(compiled: _Compiled, values: dict[str, Any]) -> list[Any]:
    return [
        values[name] if p is None else p(values[name])
        for name, p in zip(compiled.names, compiled.binds, strict=True)
    ]


def _pooled_reads_engine(session: AsyncSession) -> AsyncEngine | None:
    """The asyncpg engine a read may borrow a connection from, if the session allows it."""
    if not session.info.get(POOLED_READS) or session.in_transaction():
        return None
    engine = session.bind
    if not isinstance(engine, AsyncEngine) or engine.dialect.driver != "asyncpg":
        return None
    return engine


async def _driver(session: AsyncSession) -> tuple[Any, AsyncConnection]:
    """The session's connection, and its asyncpg connection (None on any other driver).

    The asyncpg connection is remembered in the pooled connection's `info`, which lives exactly
    as long as that database connection (a session may hold another one after a commit).
    """
    connection = await session.connection()
    if connection.dialect.driver != "asyncpg":
        return None, connection
    driver = connection.info.get(_DRIVER)
    if driver is None:
        driver = (await connection.get_raw_connection()).driver_connection
        connection.info[_DRIVER] = driver
    return driver, connection


# SQLSTATE classes after which the server closes the connection: connection exception (08),
# operator intervention (57P: shutting down, crashed).
_CONNECTION_LOST = ("08", "57P")


async def _checkout(engine: AsyncEngine) -> PoolProxiedConnection:
    """A pooled connection; a failure to connect is the DBAPIError that `engine.connect()` raises.

    The pool hands on the driver's own error (the database is starting up, say), which the
    handlers would not recognise as "the database is unavailable".
    """
    dbapi_error = engine.dialect.loaded_dbapi.Error
    try:
        return await engine.raw_connection()
    except dbapi_error as error:
        raise DBAPIError.instance(None, None, error, dbapi_error, dialect=engine.dialect) from error


def _connection_lost(error: Exception) -> bool:
    """Whether the connection can no longer be trusted after this driver error.

    Anything but an error PostgreSQL reports on a live session: a lost connection, a timeout, a
    protocol left mid-operation by one, or the server saying it is going away.
    """
    if isinstance(error, asyncpg.PostgresError):
        return error.sqlstate.startswith(_CONNECTION_LOST)
    return True


def _raise_translated(sql: str, arguments: list[Any], error: Exception) -> NoReturn:
    """Raise what SQLAlchemy would have raised for this driver error.

    A constraint violation is an IntegrityError; any other error PostgreSQL reports is a
    DBAPIError carrying its SQLSTATE (the handlers read it). A lost connection is an
    OperationalError, as for a disconnect SQLAlchemy sees; the caller discards the connection.
    """
    if isinstance(error, asyncpg.IntegrityConstraintViolationError):
        raise IntegrityError(sql, arguments, error) from error
    if not _connection_lost(error):
        raise DBAPIError(sql, arguments, error) from error
    raise OperationalError(sql, arguments, error, connection_invalidated=True) from error


@contextlib.asynccontextmanager
async def transaction(session: AsyncSession, *, one_statement: bool = False) -> AsyncIterator[None]:
    """Commit the block's statements together, or none of them.

    With asyncpg and no transaction open yet, the driver's own BEGIN and COMMIT frame the block;
    a block that sends `one_statement` on asyncpg needs neither (a statement is atomic by itself).
    Otherwise (SQLite, or the session's statements already opened a transaction) the session
    commits it all, its earlier statements included; an error rolls it all back.
    """
    driver, _ = await _driver(session)
    if driver is not None and one_statement and not driver.is_in_transaction():
        yield
        return
    if driver is None or driver.is_in_transaction():
        try:
            yield
        except BaseException:
            await session.rollback()
            raise
        await session.commit()
        return
    transaction = driver.transaction()
    await transaction.start()
    try:
        yield
    except BaseException:
        await transaction.rollback()
        raise
    else:
        await transaction.commit()
    finally:
        # A cancelled request may leave the transaction open (its ROLLBACK cancelled too): the
        # connection must not go back to the pool inside it. Closed, it is replaced on checkout.
        if driver.is_in_transaction():
            driver.terminate()
