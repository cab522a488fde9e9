"""app.db.reader: reads outside a transaction, chosen once when the app starts; on asyncpg each
statement borrows a pooled connection for itself alone."""

from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from sqlalchemy import Float, bindparam, delete, func, select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.models import User
from app.core.errors import is_unavailable
from app.db.engine import create_engine, create_read_sessionmaker, create_sessionmaker
from app.db.reader import PooledReader, SessionReader, create_reader
from app.db.statements import Query
from app.employees import crud
from app.employees.models import EmployeeRow
from tests.conftest import employee_payload

table = crud.employee_table
ONE = Query(
    select(*crud.read_columns).where(table.c.emp_id == bindparam("emp_id")), EmployeeRow._make
)
ALL = Query(select(*crud.read_columns).order_by(table.c.emp_id), EmployeeRow._make)
PID = Query(select(func.pg_backend_pid()), tuple)
SQRT = Query(select(func.sqrt(bindparam("x", type_=Float))), tuple)
SLEEP = Query(select(func.pg_sleep(bindparam("seconds", type_=Float))), tuple)


async def test_the_reader_fits_the_driver(settings: Any) -> None:
    engine = create_engine(settings)
    try:
        reader = create_reader(engine, create_read_sessionmaker(engine))
        expected = PooledReader if engine.dialect.driver == "asyncpg" else SessionReader
        assert type(reader) is expected
    finally:
        await engine.dispose()


async def test_both_readers_read_what_a_session_reads(
    engine: AsyncEngine, make_employees: Callable[..., Any]
) -> None:
    await make_employees({"emp_id": 1}, {"emp_id": 2})
    reader = create_reader(engine, create_read_sessionmaker(engine))

    row = await reader.first(ONE, emp_id=1)
    rows = await reader.all(ALL)

    async with create_sessionmaker(engine)() as session:
        assert row == await ONE.first(session, emp_id=1)
        assert rows == await ALL.all(session)
    assert await reader.first(ONE, emp_id=3) is None


@pytest.mark.postgres_only
async def test_a_pooled_read_borrows_a_connection_for_its_statement_alone(
    engine: AsyncEngine, make_employees: Callable[..., Any]
) -> None:
    await make_employees({"emp_id": 1}, {"emp_id": 2})
    reader = PooledReader(engine)

    assert [r.emp_id for r in await reader.all(ALL)] == [1, 2]
    assert (await reader.first(ONE, emp_id=1) or ())[1] == 1
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


@pytest.mark.postgres_only
async def test_a_pooled_read_keeps_its_connection_after_an_error_the_server_reports(
    settings: Any,
) -> None:
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    reader = PooledReader(engine)
    try:
        before = await reader.first(PID)
        with pytest.raises(DBAPIError) as raised:
            await reader.first(SQRT, x=-1.0)
        assert not isinstance(raised.value, OperationalError)
        assert raised.value.orig.sqlstate == "2201F"  # type: ignore[union-attr]
        assert await reader.first(PID) == before
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


@pytest.mark.postgres_only
async def test_a_pooled_read_that_times_out_discards_its_connection(settings: Any) -> None:
    """The statement timeout leaves the connection mid-statement: it is not pooled again."""
    engine = create_engine(
        settings, pool_size=1, max_overflow=0, connect_args={"timeout": 5, "command_timeout": 0.2}
    )
    reader = PooledReader(engine)
    try:
        before = await reader.first(PID)
        with pytest.raises(OperationalError) as raised:
            await reader.first(SLEEP, seconds=5)
        assert raised.value.connection_invalidated
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        after = await reader.first(PID)  # a new connection
        assert after is not None and after != before
    finally:
        await engine.dispose()


@pytest.mark.postgres_only
async def test_a_pooled_read_that_cannot_connect_is_a_database_error(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database starting up refuses new connections: the handlers must see SQLAlchemy's
    error (a 503), not the driver's (a 500)."""

    async def starting_up(*args: Any, **kwargs: Any) -> Any:
        raise asyncpg.CannotConnectNowError("the database system is starting up")

    engine = create_engine(settings)
    monkeypatch.setattr(asyncpg, "connect", starting_up)
    try:
        with pytest.raises(DBAPIError) as raised:
            await PooledReader(engine).first(ONE, emp_id=1)
        assert is_unavailable(raised.value)
    finally:
        await engine.dispose()


@pytest.mark.postgres_only
async def test_reading_a_record_over_http(
    app: Any,
    engine: AsyncEngine,
    normal_user_client: Any,
    make_employees: Callable[..., Any],
    make_user: Callable[..., Any],
    client_for: Callable[..., Any],
) -> None:
    """The served app's reader (its lifespan's): found, missing, and an account gone since."""
    assert isinstance(app.state.database.reader, PooledReader)
    await make_employees({"emp_id": 1})

    found = await normal_user_client.get("/employees/1")
    assert found.status_code == 200 and found.json()["emp_id"] == 1
    assert (await normal_user_client.get("/employees/2")).status_code == 404

    gone = await make_user(username="gone")
    async with client_for(gone) as gone_client:
        async with create_sessionmaker(engine)() as session:
            await session.execute(delete(User).where(User.id == gone.id))
            await session.commit()
        assert (await gone_client.get("/employees/1")).status_code == 401
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


@pytest.mark.postgres_only
async def test_every_request_gives_its_connections_back(
    app: Any,
    monkeypatch: pytest.MonkeyPatch,
    engine: AsyncEngine,
    normal_user_client: Any,
    admin_user_client: Any,
    make_employees: Callable[..., Any],
) -> None:
    """The session closer closes every session a request began (the list's read session, a
    write that failed); the reader gives each connection back at once. (A write's announcement
    borrows a connection after the answer, in the background, and is no request's: it is left
    out here.)"""
    monkeypatch.setattr(app.state, "announce_changes", lambda: None)
    await make_employees({"emp_id": 1})
    calls = [
        (normal_user_client.get("/employees/1"), 200),
        (normal_user_client.get("/employees/2"), 404),
        (normal_user_client.get("/employees?city=lon"), 200),
        (normal_user_client.patch("/employees/1", json={"city": "Oslo"}), 403),
        (admin_user_client.patch("/employees/1", json={"city": "Oslo"}), 200),
        (admin_user_client.patch("/employees/1", json={"city": "x" * 101}), 422),
        (admin_user_client.put("/employees/2", json=employee_payload(2)), 404),
        (admin_user_client.post("/employees/", json=employee_payload(1)), 409),
    ]
    for call, expected in calls:
        assert (await call).status_code == expected
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
