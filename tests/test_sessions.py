"""Read requests' sessions: autocommit on PostgreSQL (no BEGIN/ROLLBACK round trips)."""

import asyncio

import pytest
from sqlalchemy import text

from app.db.engine import create_engine, create_read_sessionmaker, create_sessionmaker
from tests.conftest import make_settings

pytestmark = pytest.mark.postgres_only

# Inside a transaction now() is the transaction's start, before the 10 ms sleep; in autocommit
# every statement is a transaction of its own, so now() is (within microseconds) its own start.
SAME_TRANSACTION = "SELECT statement_timestamp() - now() > interval '5 milliseconds'"


async def in_one_transaction(sessionmaker) -> bool:
    async with sessionmaker() as session:
        await session.execute(text("SELECT pg_sleep(0.01)"))
        return bool((await session.execute(text(SAME_TRANSACTION))).scalar_one())


async def test_read_sessions_run_each_statement_on_its_own(database_url):
    engine = create_engine(make_settings(database_url))
    try:
        assert not await in_one_transaction(create_read_sessionmaker(engine))
        # Writes keep their transaction: the audit row and the change commit together.
        assert await in_one_transaction(create_sessionmaker(engine))
    finally:
        await engine.dispose()


async def test_a_burst_waits_for_the_pool_instead_of_opening_connections(database_url):
    """Overflow connections are closed as soon as they are returned: under sustained load they
    were opened and closed on every burst (a sixth of the reads' throughput). By default a
    request beyond the pool waits for a pooled connection instead."""
    engine = create_engine(make_settings(database_url, db_pool_size=2))
    reads = create_read_sessionmaker(engine)

    async def read() -> int:
        async with reads() as session:
            await session.execute(text("SELECT pg_sleep(0.05)"))
            return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())

    try:
        backends = await asyncio.gather(*(read() for _ in range(12)))
        assert len(set(backends)) <= 2
        assert engine.pool.checkedin() == 2  # type: ignore[attr-defined]
    finally:
        await engine.dispose()
