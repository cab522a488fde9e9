"""The asyncpg connection under a session or lent by the pool, its errors, its transactions.

`app.db.statements` sends the hot statements on these connections; what comes back must look as it
would have through SQLAlchemy: its exceptions, and a lost connection discarded.
"""

import contextlib
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import asyncpg
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.pool import PoolProxiedConnection

_DRIVER_KEY = "app.sql.driver"  # connection.info key: its asyncpg connection, once looked up


async def session_driver(session: AsyncSession) -> tuple[Any, AsyncConnection]:
    """The session's connection, and its asyncpg connection (None on any other driver).

    The asyncpg connection is remembered in the pooled connection's `info`, which lives exactly
    as long as that database connection (a session may hold another one after a commit).
    """
    connection = await session.connection()
    if connection.dialect.driver != "asyncpg":
        return None, connection
    driver = connection.info.get(_DRIVER_KEY)
    if driver is None:
        driver = (await connection.get_raw_connection()).driver_connection
        connection.info[_DRIVER_KEY] = driver
    return driver, connection


# SQLSTATE classes after which the server closes the connection: connection exception (08),
# operator intervention (57P: shutting down, crashed).
CONNECTION_LOST = ("08", "57P")


async def checkout(engine: AsyncEngine) -> PoolProxiedConnection:
    """A pooled connection; a failure to connect is the DBAPIError that `engine.connect()` raises.

    The pool hands on the driver's own error (the database is starting up, say), which the
    handlers would not recognise as "the database is unavailable".
    """
    dbapi_error = engine.dialect.loaded_dbapi.Error
    try:
        return await engine.raw_connection()
    except dbapi_error as error:
        raise DBAPIError.instance(None, None, error, dbapi_error, dialect=engine.dialect) from error


def connection_lost(error: Exception) -> bool:
    """Whether the connection can no longer be trusted after this driver error.

    Anything but an error PostgreSQL reports on a live session: a lost connection, a timeout, a
    protocol left mid-operation by one, or the server saying it is going away.
    """
    if isinstance(error, asyncpg.PostgresError):
        return error.sqlstate.startswith(CONNECTION_LOST)
    return True


def raise_translated(sql: str, arguments: list[Any], error: Exception) -> NoReturn:
    """Raise what SQLAlchemy would have raised for this driver error.

    A constraint violation is an IntegrityError; any other error PostgreSQL reports is a
    DBAPIError carrying its SQLSTATE (the handlers read it). A lost connection is an
    OperationalError, as for a disconnect SQLAlchemy sees; the caller discards the connection.
    """
    if isinstance(error, asyncpg.IntegrityConstraintViolationError):
        raise IntegrityError(sql, arguments, error) from error
    if not connection_lost(error):
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
    driver, _ = await session_driver(session)
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
