"""A read replica (DATABASE_READ_URL): a primary and a streaming replica started by the tests.

With the replica's replay paused, its rows are older than the primary's: which one answered a
read shows in the answer. Run with `-s` to see the measured numbers.
"""

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import redis
from alembic import command
from httpx import ASGITransport, AsyncClient, Response
from prometheus_client import REGISTRY
from pydantic import ValidationError

from app.accounts.models import User
from app.core.config import Settings
from app.db.engine import create_engine, create_sessionmaker
from app.db.replica_state import ReplicaMonitor
from app.db.replica_writes import MemoryWriteLog, RedisWriteLog, WriteLogUnavailable
from app.main import create_app
from app.middleware.replica_writes import ReplicaWriteMiddleware
from app.security.passwords import password_context
from tests.conftest import employee_payload, make_settings, mint_token, running, standing_sign_in
from tests.pg import alembic_config
from tests.pgcluster import PgCluster, throwaway_cluster, throwaway_replica
from tests.test_login_limits import CLOSED_PORT_REDIS, REDIS_TEST_URL

FALLBACKS = "db_replica_fallbacks_total"
# writer and auditor are admins
ACCOUNTS = ("writer", "auditor", "reader", "revoked", "signed_out")


@dataclass
class Pair:
    primary: PgCluster
    replica: PgCluster
    tokens: dict[str, str]

    def settings(self, **overrides: Any) -> Settings:
        return make_settings(self.primary.url(), database_read_url=self.replica.url(), **overrides)


async def seed(settings: Settings) -> dict[str, str]:
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            users = {
                name: User(
                    username=f"replica.{name}",
                    hashed_password=password_context.hash("x" * 12),
                    role="admin" if name in ("writer", "auditor") else "user",
                )
                for name in ACCOUNTS
            }
            session.add_all(users.values())
            await session.flush()
            session.add_all(standing_sign_in(user) for user in users.values())
            await session.commit()
        return {name: mint_token(user, settings) for name, user in users.items()}
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    """A migrated primary with four accounts, and a hot standby streaming from it."""
    with throwaway_cluster(primary=True) as primary:
        command.upgrade(alembic_config(primary.url()), "head")
        tokens = asyncio.run(seed(make_settings(primary.url())))
        with throwaway_replica(primary) as replica:
            yield Pair(primary, replica, tokens)


def dsn(cluster: PgCluster) -> str:
    return f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"


async def sql(cluster: PgCluster, statement: str) -> Any:
    connection = await asyncpg.connect(dsn(cluster), timeout=10)
    try:
        return await connection.fetchval(statement)
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def replay_paused(replica: PgCluster) -> AsyncIterator[None]:
    await sql(replica, "SELECT pg_wal_replay_pause()")
    await until(lambda: sql(replica, "SELECT pg_get_wal_replay_pause_state() = 'paused'"))
    try:
        yield
    finally:
        await sql(replica, "SELECT pg_wal_replay_resume()")


async def until(condition: Callable[[], Any], within: float = 10.0) -> float:
    """Poll `condition` (a function, sync or async) until true; the seconds it took."""
    started = time.monotonic()
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return time.monotonic() - started
        assert time.monotonic() - started < within, f"not true within {within} s"
        await asyncio.sleep(0.05)


def fallbacks(reason: str) -> float:
    return REGISTRY.get_sample_value(FALLBACKS, {"reason": reason}) or 0.0


def client(app: Any, token: str) -> AsyncClient:
    headers = {"Authorization": f"Bearer {token}"}
    return AsyncClient(transport=ASGITransport(app=app), base_url="http://test", headers=headers)


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Any]:
    """The app with its lifespan, once its replica serves reads."""
    async with running(create_app(settings)) as app:
        await until(lambda: app.state.replica.monitor.state.serves)
        yield app


def name_of(response: Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["emp_name"])


async def names_everywhere(api: AsyncClient, emp_id: int, country: str) -> set[str]:
    """The employee's name as one read, the list and the export each show it."""
    one = name_of(await api.get(f"/employees/{emp_id}"))
    listed = await api.get("/employees/", params={"country": country})
    assert listed.status_code == 200
    exported = await api.get("/employees/export.csv", params={"country": country})
    assert exported.status_code == 200
    in_export = exported.text.splitlines()[1].split(",")[1]
    return {one, listed.json()[0]["emp_name"], in_export}


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix no other run shares; its keys are deleted afterwards."""
    connection = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=0.5)
    try:
        connection.ping()
    except redis.RedisError as error:
        pytest.skip(f"Redis does not answer at {REDIS_TEST_URL} ({type(error).__name__})")
    prefix = f"replica-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    keys = list(connection.scan_iter(match=f"{prefix}:*"))
    if keys:
        connection.delete(*keys)
    connection.close()


@pytest.mark.postgres_only
class TestStreamingReplica:
    @pytest.mark.parametrize("write_log", ["memory", "redis"])
    async def test_the_writer_reads_its_write_while_others_read_the_replica(
        self, pair: Pair, write_log: str, request: pytest.FixtureRequest
    ) -> None:
        emp_id, country = (2001, "Memoryland") if write_log == "memory" else (2002, "Redisland")
        settings = pair.settings(replica_max_lag_seconds=60)
        if write_log == "redis":
            prefix = request.getfixturevalue("redis_prefix")
            settings = pair.settings(
                replica_max_lag_seconds=60, redis_url=REDIS_TEST_URL, redis_key_prefix=prefix
            )
        tokens = pair.tokens
        async with contextlib.AsyncExitStack() as stack:
            first = await stack.enter_async_context(serving(settings))
            # With Redis, the writer's reads go to another worker than its writes.
            second = (
                await stack.enter_async_context(serving(settings))
                if write_log == "redis"
                else first
            )
            writes = await stack.enter_async_context(client(first, tokens["writer"]))
            writer = await stack.enter_async_context(client(second, tokens["writer"]))
            reader = await stack.enter_async_context(client(second, tokens["reader"]))
            auditor = await stack.enter_async_context(client(second, tokens["auditor"]))

            payload = employee_payload(emp_id, emp_name="Before", country=country)
            assert (await writes.post("/employees/", json=payload)).status_code == 201
            await until(lambda: reader_sees(reader, emp_id, "Before"))

            async with replay_paused(pair.replica):
                changed = await writes.patch(f"/employees/{emp_id}", json={"emp_name": "After"})
                assert changed.status_code == 200
                pinned = fallbacks("read_your_writes")

                assert await names_everywhere(writer, emp_id, country) == {"After"}
                assert await names_everywhere(reader, emp_id, country) == {"Before"}
                history = f"/employees/{emp_id}/history"
                assert len((await writer.get(history)).json()) == 2
                assert len((await auditor.get(history)).json()) == 1
                assert fallbacks("read_your_writes") >= pinned + 4

            took = await until(lambda: reader_sees(reader, emp_id, "After"))
            print(f"\n[{write_log}] the replica had the write {took:.2f} s after resuming")
            assert await names_everywhere(writer, emp_id, country) == {"After"}
            assert await names_everywhere(reader, emp_id, country) == {"After"}

    async def test_a_revoked_token_is_refused_although_the_replica_still_admits_it(
        self, pair: Pair
    ) -> None:
        settings = pair.settings(replica_max_lag_seconds=60)
        async with serving(settings) as app, client(app, pair.tokens["revoked"]) as revoked:
            assert (await revoked.get("/employees/1")).status_code == 404
            async with replay_paused(pair.replica):
                await sql(
                    pair.primary,
                    "UPDATE app_user SET token_version = token_version + 1 "
                    "WHERE username = 'replica.revoked'",
                )
                for path in ("/employees/1", "/employees/", "/employees/export.csv"):
                    assert (await revoked.get(path)).status_code == 401

    async def test_a_signed_out_token_is_refused_although_the_replica_still_admits_it(
        self, pair: Pair
    ) -> None:
        settings = pair.settings(replica_max_lag_seconds=60)
        async with serving(settings) as app, client(app, pair.tokens["signed_out"]) as signed_out:
            assert (await signed_out.get("/employees/1")).status_code == 404
            async with replay_paused(pair.replica):
                await sql(
                    pair.primary,
                    "UPDATE sign_in SET revoked_at = now() FROM app_user "
                    "WHERE sign_in.user_id = app_user.id AND username = 'replica.signed_out'",
                )
                for path in ("/employees/1", "/employees/", "/employees/export.csv"):
                    assert (await signed_out.get(path)).status_code == 401

    async def test_a_replica_lagging_past_the_limit_serves_no_read(self, pair: Pair) -> None:
        emp_id = 2003
        async with serving(pair.settings(replica_max_lag_seconds=1)) as app:
            replica = app.state.replica
            async with (
                client(app, pair.tokens["writer"]) as writer,
                client(app, pair.tokens["reader"]) as reader,
            ):
                payload = employee_payload(emp_id, emp_name="Before")
                assert (await writer.post("/employees/", json=payload)).status_code == 201
                await until(lambda: reader_sees(reader, emp_id, "Before"))
                async with replay_paused(pair.replica):
                    await writer.patch(f"/employees/{emp_id}", json={"emp_name": "After"})
                    took = await until(lambda: replica.monitor.state.status == "lagging")
                    print(f"\nlagging past 1 s noticed {took:.2f} s after the write")
                    lagging = fallbacks("lagging")
                    assert name_of(await reader.get(f"/employees/{emp_id}")) == "After"
                    assert fallbacks("lagging") == lagging + 1
                    ready = await reader.get("/health/ready")
                    assert ready.status_code == 200
                    assert ready.json()["checks"]["replica"] == "degraded"
                    assert ready.json()["replica"]["state"] == "lagging"
                await until(lambda: replica.monitor.state.serves)
                assert (await reader.get("/health/ready")).json()["checks"]["replica"] == "ok"

    async def test_a_replica_stopped_under_load_fails_no_request(self, pair: Pair) -> None:
        statuses: list[int | str] = []
        before = fallbacks("error") + fallbacks("unavailable")
        try:
            settings = pair.settings(replica_max_lag_seconds=60)
            async with (
                serving(settings) as app,
                client(app, pair.tokens["writer"]) as writer,
                client(app, pair.tokens["auditor"]) as api,
            ):
                written = await writer.post("/employees/", json=employee_payload(2004))
                assert written.status_code == 201
                await until(lambda: reader_sees(api, 2004, "Ada Lovelace"))
                stop = asyncio.Event()
                paths = ("/employees/2004", "/employees/", "/employees/export.csv")

                async def read_until_stopped(path: str) -> None:
                    while not stop.is_set():
                        try:
                            statuses.append((await api.get(path)).status_code)
                        except Exception as error:  # any failure is a failed request
                            statuses.append(type(error).__name__)

                readers = [asyncio.create_task(read_until_stopped(paths[i % 3])) for i in range(9)]
                await asyncio.sleep(1.0)
                served_before = len(statuses)
                await asyncio.to_thread(pair.replica.stop)
                await asyncio.sleep(1.5)
                stop.set()
                await asyncio.gather(*readers)

                ready = await api.get("/health/ready")
                assert ready.status_code == 200
                assert ready.json()["checks"] == {
                    "database": "ok",
                    "migrations": "ok",
                    "replica": "degraded",
                }
                assert ready.json()["replica"] == {"state": "unavailable"}

                print(
                    f"\n{len(statuses)} reads ({served_before} before the stop), "
                    f"fallbacks: error {fallbacks('error'):.0f}, "
                    f"unavailable {fallbacks('unavailable'):.0f}"
                )
                assert served_before > 0
                assert set(statuses) == {200}
                assert fallbacks("error") + fallbacks("unavailable") > before

                await asyncio.to_thread(pair.replica.start)
                await until(lambda: app.state.replica.monitor.state.serves)
        finally:
            if not pair.replica.is_running():
                pair.replica.start()


async def reader_sees(api: AsyncClient, emp_id: int, name: str) -> bool:
    response = await api.get(f"/employees/{emp_id}")
    return response.status_code == 200 and response.json()["emp_name"] == name


class TestWithoutAReplica:
    async def test_nothing_is_added(self, app: Any, client: AsyncClient) -> None:
        assert app.state.replica is None
        assert not any(layer.cls is ReplicaWriteMiddleware for layer in app.user_middleware)
        ready = (await client.get("/health/ready")).json()
        assert "replica" not in ready
        assert "replica" not in ready["checks"]


@pytest.mark.postgres_only
class TestNotAStandby:
    async def test_a_server_that_is_no_standby_serves_no_read(
        self, app_with, settings, normal_user, token_for, make_employees
    ) -> None:
        await make_employees(employee_payload(emp_id=7))
        app = await app_with(database_read_url=settings.database_url)  # the primary itself
        await until(lambda: app.state.replica.monitor.problem is not None)
        assert "not a standby" in app.state.replica.monitor.problem
        async with client(app, token_for(normal_user)) as api:
            assert (await api.get("/employees/7")).status_code == 200
            ready = await api.get("/health/ready")
            assert ready.status_code == 200
            assert ready.json()["checks"]["replica"] == "degraded"
            assert ready.json()["replica"] == {"state": "unavailable"}


class TestSettings:
    def test_a_read_url_needs_a_postgresql_primary(self) -> None:
        with pytest.raises(ValidationError, match="needs DATABASE_URL to be PostgreSQL"):
            make_settings("sqlite+aiosqlite://", database_read_url="postgresql://replica/db")

    def test_a_read_url_must_be_postgresql(self) -> None:
        with pytest.raises(ValidationError, match="must be a postgresql:// URL"):
            make_settings("postgresql://primary/db", database_read_url="sqlite:///replica.db")

    def test_read_urls_are_normalised_and_blank_is_unset(self) -> None:
        settings = make_settings("postgresql://p/db", database_read_url="postgres://r/db")
        assert settings.database_read_url == "postgresql+asyncpg://r/db"
        assert make_settings("postgresql://p/db", database_read_url=" ").database_read_url is None


class TestLag:
    """The monitor's arithmetic on noted (time, primary position) pairs."""

    def monitor(self) -> ReplicaMonitor:
        memory = MemoryWriteLog(10)
        return ReplicaMonitor(
            primary=None,  # no check runs here
            replica=None,
            max_lag=5,
            timeout=1,
            on_replayed=memory.forget_replayed,
        )

    def test_a_replica_that_replayed_the_latest_position_has_no_lag(self) -> None:
        monitor = self.monitor()
        monitor.samples.extend([(100.0, 10), (100.5, 20)])
        assert monitor.lag(100.6, 20) == 0.0
        assert list(monitor.samples) == [(100.5, 20)]

    def test_the_lag_is_the_age_of_the_newest_replayed_position(self) -> None:
        monitor = self.monitor()
        monitor.samples.extend([(100.0, 10), (100.5, 20), (101.0, 30)])
        assert monitor.lag(101.2, 25) == pytest.approx(0.7)
        assert list(monitor.samples) == [(100.5, 20), (101.0, 30)]

    def test_an_idle_primary_makes_no_lag(self) -> None:
        monitor = self.monitor()
        monitor.samples.extend([(100.0, 30), (200.0, 30)])
        assert monitor.lag(200.1, 30) == 0.0


class TestMemoryWriteLog:
    async def test_a_write_is_pending_until_replayed_or_expired(self) -> None:
        now = [0.0]
        log = MemoryWriteLog(10, clock=lambda: now[0])
        user = uuid.uuid4()
        await log.record(user, 100)
        await log.record(user, 50)  # an earlier position never moves it back
        assert await log.pending(user, 99)
        assert not await log.pending(user, 100)
        assert not await log.pending(uuid.uuid4(), 0)
        log.forget_replayed(100)
        assert log.writes == {}
        await log.record(user, 200)
        now[0] = 11.0
        assert not await log.pending(user, 0)


class TestRedisWriteLog:
    async def test_every_worker_sees_a_write_and_it_never_moves_back(self, redis_prefix) -> None:
        one, other = (
            RedisWriteLog(REDIS_TEST_URL, key_prefix=redis_prefix, keep_seconds=30)
            for _ in range(2)
        )
        user = uuid.uuid4()
        try:
            await one.record(user, 0x1_0000_0000)
            await other.record(user, 0x10)  # an earlier position, recorded later
            assert await other.pending(user, 0xFFFF_FFFF)
            assert not await other.pending(user, 0x1_0000_0000)
            assert not await other.pending(uuid.uuid4(), 0)
            ttl = await one.redis.ttl(f"{redis_prefix}:replica:written:{user.hex}")
            assert 0 < ttl <= 30
        finally:
            await one.aclose()
            await other.aclose()

    async def test_without_redis_a_workers_own_writes_still_count(self) -> None:
        log = RedisWriteLog(CLOSED_PORT_REDIS, key_prefix="unreachable", keep_seconds=30)
        writer = uuid.uuid4()
        try:
            await log.record(writer, 100)  # no error: the answer must still go out
            assert await log.pending(writer, 99)
            with pytest.raises(WriteLogUnavailable):
                await log.pending(uuid.uuid4(), 99)  # unknown: its reads go to the primary
        finally:
            await log.aclose()
