"""The asyncpg connection under a session or lent by the pool: its errors translated to
SQLAlchemy's, and its transactions.
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
    """The session's connection and its asyncpg connection (None on other drivers),
    remembered in the pooled connection's `info` for as long as that connection lives."""
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
    """A pooled connection; a failure to connect raised as the DBAPIError the handlers know
    (the pool would hand on the driver's own error)."""
    dbapi_error = engine.dialect.loaded_dbapi.Error
    try:
        return await engine.raw_connection()
    except dbapi_error as error:
        raise DBAPIError.instance(None, None, error, dbapi_error, dialect=engine.dialect) from error


def connection_lost(error: Exception) -> bool:
    """Whether the connection is done for: anything but an error PostgreSQL reports on a live
    session."""
    if isinstance(error, asyncpg.PostgresError):
        return str(error.sqlstate).startswith(CONNECTION_LOST)
    return True


def raise_translated(sql: str, arguments: list[Any], error: Exception) -> NoReturn:
    """Raise what SQLAlchemy would have: IntegrityError, DBAPIError with the SQLSTATE, or an
    OperationalError for a lost connection (which the caller discards)."""
    if isinstance(error, asyncpg.IntegrityConstraintViolationError):
        raise IntegrityError(sql, arguments, error) from error
    if not connection_lost(error):
        raise DBAPIError(sql, arguments, error) from error
    raise OperationalError(sql, arguments, error, connection_invalidated=True) from error


@contextlib.asynccontextmanager
async def transaction(session: AsyncSession, *, one_statement: bool = False) -> AsyncIterator[None]:
    """Commit the block's statements together, or none. On asyncpg outside a transaction the
    driver's BEGIN and COMMIT frame it (`one_statement` needs neither); otherwise the session
    commits it, its earlier statements included."""
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
