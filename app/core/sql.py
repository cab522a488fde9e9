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
"""

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, TypeVar

import asyncpg
from sqlalchemy import Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import Executable

R = TypeVar("R")
_DRIVER = "app.sql.driver"  # connection.info key: its asyncpg connection, once looked up


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
        driver, connection = await _driver(session)
        if driver is None:
            statement = self.statement_for(connection.dialect)
            row = (await session.execute(statement, values)).first()
            return None if row is None else self.row(tuple(row))
        compiled = self._compile(connection.dialect)
        record = await _run(driver, "fetchrow", connection, compiled, values)
        return None if record is None else self._make(compiled, record)

    async def all(self, session: AsyncSession, **values: Any) -> list[R]:
        """Every row the statement returns."""
        driver, connection = await _driver(session)
        if driver is None:
            rows = await session.execute(self.statement_for(connection.dialect), values)
            return [self.row(tuple(row)) for row in rows]
        compiled = self._compile(connection.dialect)
        records = await _run(driver, "fetch", connection, compiled, values)
        return [self._make(compiled, record) for record in records]

    async def execute(self, session: AsyncSession, **values: Any) -> int:
        """Run a statement that returns no rows; how many rows it changed."""
        driver, connection = await _driver(session)
        if driver is None:
            result = await session.execute(self.statement_for(connection.dialect), values)
            return int(result.rowcount)  # type: ignore[attr-defined]
        compiled = self._compile(connection.dialect)
        status = await _run(driver, "execute", connection, compiled, values)
        # "INSERT 0 1", "UPDATE 1", "DELETE 0": the count comes last.
        return int(status.rsplit(" ", 1)[-1])


async def _run(
    driver: Any,
    method: str,
    connection: AsyncConnection,
    compiled: _Compiled,
    values: dict[str, Any],
) -> Any:
    arguments = [
        values[name] if p is None else p(values[name])
        for name, p in zip(compiled.names, compiled.binds, strict=True)
    ]
    try:
        return await getattr(driver, method)(compiled.sql, *arguments)
    except Exception as error:
        await _raise_translated(connection, compiled.sql, arguments, error)


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


async def _raise_translated(
    connection: AsyncConnection, sql: str, arguments: list[Any], error: Exception
) -> NoReturn:
    """Raise what SQLAlchemy would have raised for this driver error.

    A constraint violation is an IntegrityError; any other error PostgreSQL reports is a
    DBAPIError carrying its SQLSTATE (the handlers read it). Anything else the driver raises (a
    lost connection, a timeout, a protocol left mid-operation by one) means the connection
    cannot be trusted: it is discarded from the pool and the error is an OperationalError, as
    for a disconnect SQLAlchemy sees.
    """
    if isinstance(error, asyncpg.IntegrityConstraintViolationError):
        raise IntegrityError(sql, arguments, error) from error
    if isinstance(error, asyncpg.PostgresError) and not error.sqlstate.startswith(_CONNECTION_LOST):
        raise DBAPIError(sql, arguments, error) from error
    with contextlib.suppress(Exception):
        await connection.invalidate()
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
