"""app.db.statements and app.db.driver: statements sent on the driver give what SQLAlchemy gives,
errors included, and transactions on it commit all or nothing."""

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from sqlalchemy import Float, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.driver import transaction
from app.db.engine import create_engine, create_read_sessionmaker
from app.db.statements import Query
from app.employees import crud, service
from app.employees.models import EmployeeCreate, EmployeeRead, EmployeeRow
from tests.conftest import employee_payload
from tests.pg import asyncpg_dsn

table = crud.employee_table
BY_EMP_ID = select(*crud.read_columns).where(table.c.emp_id == bindparam("emp_id"))
ONE = Query(BY_EMP_ID, EmployeeRow._make)
ALL = Query(select(*crud.read_columns).order_by(table.c.emp_id), EmployeeRow._make)
RENAME = Query(
    update(table).where(table.c.city == bindparam("old")).values(city=bindparam("new")), tuple
)
COUNT = select(func.count()).select_from(table)
SLEEP = Query(select(func.pg_sleep(bindparam("seconds", type_=Float))), tuple)
Sessions = async_sessionmaker[AsyncSession]


def test_employee_row_has_the_fields_of_employee_read() -> None:
    assert EmployeeRow._fields == tuple(EmployeeRead.model_fields)


async def test_rows_are_what_sqlalchemy_returns(
    session: AsyncSession, make_employees: Callable[..., Any]
) -> None:
    await make_employees({"emp_id": 1}, {"emp_id": 2, "city": "Paris"})

    row = await ONE.first(session, emp_id=2)
    expected = (await session.execute(BY_EMP_ID, {"emp_id": 2})).one()

    assert row == tuple(expected)
    assert isinstance(row, EmployeeRow) and row.city == "Paris"
    assert row.created_at.tzinfo is not None  # the column type's result processing applied
    assert await ONE.first(session, emp_id=3) is None
    assert [r.emp_id for r in await ALL.all(session)] == [1, 2]


async def test_execute_counts_the_rows_changed(
    session: AsyncSession, make_employees: Callable[..., Any]
) -> None:
    await make_employees({"emp_id": 1}, {"emp_id": 2}, {"emp_id": 3, "city": "Paris"})

    assert await RENAME.execute(session, old="London", new="Leeds") == 2
    assert await RENAME.execute(session, old="Nowhere", new="Leeds") == 0


async def test_a_duplicate_is_an_integrity_error(session: AsyncSession) -> None:
    record = service.new_record(EmployeeCreate(**employee_payload(7)))
    await crud._INSERT.write.first(session, **record._asdict())

    again = service.new_record(EmployeeCreate(**employee_payload(7)))
    with pytest.raises(IntegrityError):
        await crud._INSERT.write.first(session, **again._asdict())


async def _count(sessionmaker: Sessions) -> int:
    async with sessionmaker() as session:
        return int((await session.execute(COUNT)).scalar_one())


async def _insert(session: AsyncSession, emp_id: int) -> None:
    record = service.new_record(EmployeeCreate(**employee_payload(emp_id)))
    await crud._INSERT.write.first(session, **record._asdict())


@pytest.mark.postgres_only
async def test_a_transaction_commits_all_or_nothing(sessionmaker: Sessions) -> None:
    async with sessionmaker() as session, transaction(session):
        await _insert(session, 1)
        await _insert(session, 2)
    assert await _count(sessionmaker) == 2

    async with sessionmaker() as session:
        with pytest.raises(IntegrityError):
            async with transaction(session):
                await _insert(session, 3)
                await _insert(session, 1)  # taken: the whole block is undone
    assert await _count(sessionmaker) == 2

    async with sessionmaker() as session:
        with pytest.raises(RuntimeError):
            async with transaction(session):
                await _insert(session, 4)
                raise RuntimeError("the handler failed after the insert")
    assert await _count(sessionmaker) == 2


@pytest.mark.postgres_only
async def test_statements_outside_a_transaction_commit_at_once(sessionmaker: Sessions) -> None:
    """A read session's statements run in autocommit: nothing is left open on the connection."""
    async with sessionmaker() as session:
        await _insert(session, 1)
        driver = (await (await session.connection()).get_raw_connection()).driver_connection
        assert not driver.is_in_transaction()
        assert await _count(sessionmaker) == 1  # seen from another connection


@pytest.mark.postgres_only
async def test_a_cancelled_transaction_leaves_nothing_behind(sessionmaker: Sessions) -> None:
    inserted = asyncio.Event()

    async def slow_write() -> None:
        async with sessionmaker() as session, transaction(session):
            await _insert(session, 1)
            inserted.set()
            await asyncio.sleep(30)  # the client went away meanwhile

    task = asyncio.create_task(slow_write())
    await inserted.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await _count(sessionmaker) == 0
    async with sessionmaker() as session:  # the pool hands out no connection inside a transaction
        driver = (await (await session.connection()).get_raw_connection()).driver_connection
        assert not driver.is_in_transaction()
        await _insert(session, 2)
    assert await _count(sessionmaker) == 1


@pytest.mark.postgres_only
async def test_a_lost_connection_is_an_operational_error_and_is_replaced(
    sessionmaker: Sessions, postgres_server: Any
) -> None:
    async with sessionmaker() as session:
        await ONE.first(session, emp_id=1)
        connection = await session.connection()
        driver = (await connection.get_raw_connection()).driver_connection
        killer = await asyncpg.connect(asyncpg_dsn(postgres_server.url))
        try:
            await killer.execute("SELECT pg_terminate_backend($1)", driver.get_server_pid())
        finally:
            await killer.close()
        with pytest.raises(OperationalError) as raised:
            await ONE.first(session, emp_id=1)
        assert raised.value.connection_invalidated

    async with sessionmaker() as session:  # a new connection; the dead one is gone
        assert await ONE.first(session, emp_id=1) is None


@pytest.mark.postgres_only
async def test_a_statement_cancelled_midway_does_not_poison_the_pool(settings: Any) -> None:
    """uvicorn cancels requests still running when a shutdown's drain time is up: the connection
    is then halfway through a statement, and must not be handed to the next request as it is."""
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    sessions = create_read_sessionmaker(engine)
    try:
        started = asyncio.Event()

        async def slow_read() -> None:
            async with sessions() as session:
                started.set()
                await SLEEP.first(session, seconds=30)

        task = asyncio.create_task(slow_read())
        await started.wait()
        await asyncio.sleep(0.2)  # the statement is on the server now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        async with sessions() as session:  # the pool's only connection, or its replacement
            assert await ONE.first(session, emp_id=1) is None
    finally:
        await engine.dispose()


@pytest.mark.postgres_only
async def test_a_transaction_left_open_is_closed_not_pooled(
    sessionmaker: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second cancellation can cut the ROLLBACK short too: the connection is closed then,
    rather than handed to the next request inside the half-done transaction."""

    async def cancelled_rollback(self: Any) -> None:
        raise asyncio.CancelledError

    async with sessionmaker() as session:
        driver = (await (await session.connection()).get_raw_connection()).driver_connection
        with pytest.raises(asyncio.CancelledError):
            async with transaction(session):
                await _insert(session, 1)
                monkeypatch.setattr(asyncpg.transaction.Transaction, "rollback", cancelled_rollback)
                raise RuntimeError("the handler failed")
        monkeypatch.undo()
        assert driver.is_closed()

    assert await _count(sessionmaker) == 0
    async with sessionmaker() as session:
        await _insert(session, 2)
    assert await _count(sessionmaker) == 1


@pytest.mark.postgres_only
async def test_after_a_commit_the_statements_follow_the_session_to_its_new_connection(
    sessionmaker: Sessions,
) -> None:
    """A commit hands the session's connection back to the pool; another request may take it."""
    pid = Query(select(func.pg_backend_pid()), tuple)

    async def backend(session: AsyncSession) -> tuple[int, int]:
        driven = await pid.first(session)
        assert driven is not None
        return driven[0], (await session.execute(select(func.pg_backend_pid()))).scalar_one()

    async with sessionmaker() as session:
        await backend(session)
        await session.commit()
        async with sessionmaker() as other:  # takes the connection the first session gave back
            taken, _ = await backend(other)
            now, holding = await backend(session)
            assert now == holding != taken


class RoundTrips:
    """The statements sent on asyncpg (BEGIN and COMMIT included), by their first word."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[str] = []
        for owner, name in (
            (asyncpg.connection.Connection, "fetchrow"),
            (asyncpg.connection.Connection, "fetch"),
            (asyncpg.connection.Connection, "execute"),
            (asyncpg.connection.Connection, "prepare"),  # SQLAlchemy's own path
        ):
            monkeypatch.setattr(owner, name, self._counting(name, getattr(owner, name)))

    def _counting(self, name: str, method: Any) -> Any:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            sql = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
            self.sent.append(f"{name} {sql.split()[0].rstrip(';') if sql else ''}".strip())
            return await method(*args, **kwargs)

        return counted


@pytest.mark.postgres_only
async def test_the_writes_round_trips_on_postgresql(
    app: Any,
    admin_user_client: Any,
    make_employees: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A create is the account and one statement (the record with its audit row); a PATCH reads
    the account with the record it locks, then writes, between BEGIN and COMMIT. (After the
    answer, the worker announces the change on a connection of its own, in the background: it
    is left out here, where its statements would fall among the next request's.)"""
    monkeypatch.setattr(app.state, "announce_changes", lambda: None)
    await make_employees({"emp_id": 1})
    trips = RoundTrips(monkeypatch)

    created = await admin_user_client.post("/employees/", json=employee_payload(2))
    assert created.status_code == 201
    assert trips.sent == ["fetchrow SELECT", "fetchrow WITH"]  # the account; record + audit row

    trips.sent.clear()
    patched = await admin_user_client.patch("/employees/1", json={"city": "Porto"})
    assert patched.status_code == 200
    assert trips.sent == [
        "execute BEGIN",
        "fetchrow SELECT",  # the account, and the record locked
        "fetchrow WITH",  # the new version and its audit row
        "execute COMMIT",
    ]
