"""Database faults against a real server process on a private PostgreSQL it may stop and freeze.

Run with `-s` to see the measured numbers (time to 503, time to ready, errors during a restart).
"""

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import pytest
from alembic import command

from app.accounts.models import User
from app.core.config import Settings
from app.db.engine import create_engine, create_sessionmaker
from app.employees.models import Employee
from app.security.passwords import password_context
from tests.conftest import SECRET, employee_payload, make_settings, mint_token, standing_sign_in
from tests.pg import alembic_config
from tests.pgcluster import PgCluster, throwaway_cluster
from tests.test_startup import free_port, server_env, users_in, wait_until_up

ADMIN = {"username": "fault.admin", "password": "fault-admin-password"}
NO_ANSWER_LIMIT = 10.0
REFUSED_LIMIT = 2.0
READY_LIMIT = 5.0


@dataclass
class Seeded:
    cluster: PgCluster
    url: str
    token: str


async def seed(settings: Settings) -> str:
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            user = User(username="fault.reader", hashed_password=password_context.hash("x" * 12))
            data = employee_payload() | {"emp_dob": date(1985, 12, 10)}
            session.add_all([user, Employee(**data)])
            await session.flush()
            session.add(standing_sign_in(user))
            await session.commit()
            return mint_token(user, settings)
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def seeded() -> Iterator[Seeded]:
    """One private server for the module, migrated, with a reader and employee 1001."""
    with throwaway_cluster() as cluster:
        url = cluster.url()
        command.upgrade(alembic_config(url), "head")
        token = asyncio.run(seed(make_settings(url)))
        yield Seeded(cluster, url, token)


@pytest.fixture
def pg(seeded: Seeded) -> Iterator[Seeded]:
    """The module's server, left running and answering whatever the test did to it."""
    try:
        yield seeded
    finally:
        seeded.cluster.thaw()
        if not seeded.cluster.is_running():
            seeded.cluster.start()


@contextlib.contextmanager
def serving(
    tmp_path: Path,
    database_url: str,
    *,
    wait: bool = True,
    args: tuple[str, ...] = (),
    **env: str,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m app serve` on a free port, one worker; output in `tmp_path/server.log`."""
    port = free_port()
    log = tmp_path / "server.log"
    # Request limits off: these loads are one client's, far past any quota, and test the database.
    values = {
        "DATABASE_URL": database_url,
        "JWT_SECRET_KEY": SECRET,
        "WEB_CONCURRENCY": "1",
        "RATE_LIMIT_ENABLED": "false",
    }
    command_line = [sys.executable, "-m", "app", "serve", "--port", str(port), *args]
    with log.open("wb") as output:
        server = subprocess.Popen(
            command_line,
            cwd=tmp_path,
            env=server_env(**(values | env)),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        if wait:
            wait_until_up(base, server, log)
        yield base, server
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)


def timed_get(client: httpx.Client, path: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = client.get(path)
    return response, time.monotonic() - started


def wait_for_status(client: httpx.Client, path: str, status: int, within: float) -> float:
    """Poll until `path` answers `status`; the seconds it took."""
    started = time.monotonic()
    while True:
        with contextlib.suppress(httpx.TransportError):
            if client.get(path).status_code == status:
                return time.monotonic() - started
        assert time.monotonic() - started < within, f"{path} not {status} within {within} s"
        time.sleep(0.05)


def client_for(base: str, token: str) -> httpx.Client:
    # The client's own timeout is far above the service's: a hang would show as a failure here.
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_restart_under_load_fails_no_request_once_the_database_is_back(pg, tmp_path):
    outcomes: list[tuple[float, float, int | str]] = []  # (start, end, status or error)
    back_at: list[float] = []

    async def reader(client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                outcome: int | str = (await client.get("/employees/1001")).status_code
            except httpx.TransportError as error:
                outcome = type(error).__name__
            outcomes.append((started, time.monotonic(), outcome))

    async def load(base: str) -> None:
        headers = {"Authorization": f"Bearer {pg.token}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            stop = asyncio.Event()
            readers = [asyncio.create_task(reader(client, stop)) for _ in range(8)]
            try:
                await asyncio.sleep(1.0)
                await asyncio.to_thread(pg.cluster.restart, "fast")  # returns once it accepts
                assert await asyncio.to_thread(pg.cluster.accepts_connections)
                back_at.append(time.monotonic())
                await asyncio.sleep(1.5)
            finally:
                stop.set()
                await asyncio.gather(*readers)

    with serving(tmp_path, pg.url) as (base, _):
        asyncio.run(load(base))

    (back,) = back_at
    before = [outcome for start, _, outcome in outcomes if start < back]
    after = [outcome for start, _, outcome in outcomes if start >= back]
    during = [o for o in before if o != 200]
    print(
        f"\nrestart under load: {len(outcomes)} requests, {len(before)} before PostgreSQL was back "
        f"({len(during)} not 200: {sorted(set(map(str, during)))}), {len(after)} after "
        f"({sum(o != 200 for o in after)} failed)"
    )
    assert before.count(200) > 50 and len(after) > 50
    assert all(o in (200, 503) for o in before), during  # never a 500, never a dropped connection
    assert after == [200] * len(after)


def test_idle_pooled_connections_are_checked_after_a_restart(pg, tmp_path):
    """No request in flight during the restart: nothing tells the pool its connections died."""

    async def burst(client: httpx.AsyncClient) -> list[int]:
        replies = await asyncio.gather(*(client.get("/employees/1001") for _ in range(8)))
        return [reply.status_code for reply in replies]

    async def scenario(base: str) -> tuple[list[int], list[int]]:
        headers = {"Authorization": f"Bearer {pg.token}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            warm = await burst(client)  # several pooled connections, idle from here on
            await asyncio.to_thread(pg.cluster.restart, "fast")
            return warm, await burst(client) + await burst(client)

    with serving(tmp_path, pg.url) as (base, _):
        warm, after = asyncio.run(scenario(base))
    assert warm == [200] * 8
    assert after == [200] * 16


def test_stopped_database_gets_fast_503_and_service_recovers_by_itself(pg, tmp_path):
    with serving(tmp_path, pg.url) as (base, _), client_for(base, pg.token) as client:
        assert client.get("/employees/1001").status_code == 200
        pg.cluster.stop()
        response, elapsed = timed_get(client, "/employees/1001")
        ready, ready_elapsed = timed_get(client, "/health/ready")
        print(f"\nrefused: 503 after {elapsed:.3f} s, readiness 503 after {ready_elapsed:.3f} s")
        assert response.status_code == 503
        assert response.headers["retry-after"].isdigit()
        assert elapsed < REFUSED_LIMIT
        assert ready.status_code == 503 and ready_elapsed < REFUSED_LIMIT
        assert ready.json()["checks"]["database"] == "unreachable"

        pg.cluster.start()
        recovered = wait_for_status(client, "/employees/1001", 200, within=5)
        print(f"refused: 200 again {recovered:.3f} s after PostgreSQL started")
        assert client.get("/employees/1001").json()["emp_id"] == 1001


def test_frozen_database_gets_503_within_ten_seconds_never_a_hang(pg, tmp_path):
    # Shorter bounds than the defaults' (5 s each): the same behaviour, sooner.
    bounds = {"DB_STATEMENT_TIMEOUT": "2", "DB_CONNECT_TIMEOUT": "2"}
    with serving(tmp_path, pg.url, **bounds) as (base, _), client_for(base, pg.token) as client:
        assert client.get("/employees/1001").status_code == 200  # a pooled connection exists
        pg.cluster.freeze()
        try:
            # First the pooled connection stalls (pre-ping), then a new one (connect).
            timings = []
            for _ in range(2):
                response, elapsed = timed_get(client, "/employees/1001")
                timings.append(elapsed)
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"].isdigit()
                assert elapsed < NO_ANSWER_LIMIT
            ready, ready_elapsed = timed_get(client, "/health/ready")
            assert ready.status_code == 503 and ready_elapsed < 3
            assert ready.headers["retry-after"].isdigit()
            print(
                "\nno answer: 503 after "
                + ", ".join(f"{t:.2f} s" for t in timings)
                + f" (pooled, then new connection); readiness 503 after {ready_elapsed:.2f} s"
            )
        finally:
            pg.cluster.thaw()
        recovered = wait_for_status(client, "/employees/1001", 200, within=10)
        print(f"no answer: 200 again {recovered:.2f} s after the server resumed")


def test_service_starts_while_database_is_down_and_becomes_ready(pg, tmp_path):
    pg.cluster.stop()
    env = {"FIRST_ADMIN_USERNAME": ADMIN["username"], "FIRST_ADMIN_PASSWORD": ADMIN["password"]}
    with serving(tmp_path, pg.url, **env) as (base, server), client_for(base, pg.token) as client:
        assert client.get("/health/live").json() == {"status": "ok"}
        not_ready = client.get("/health/ready")
        assert not_ready.status_code == 503
        assert not_ready.json()["checks"] == {"database": "unreachable", "migrations": "unknown"}
        time.sleep(1.5)  # several background attempts to create the first admin fail meanwhile
        assert server.poll() is None

        pg.cluster.start()
        to_ready = wait_for_status(client, "/health/ready", 200, within=READY_LIMIT)
        print(f"\nstart while down: ready {to_ready:.3f} s after PostgreSQL accepted connections")
        assert client.get("/health/ready").json()["status"] == "ready"

        deadline = time.monotonic() + 5
        while ADMIN["username"] not in {user.username for user in asyncio.run(users_in(pg.url))}:
            assert time.monotonic() < deadline, "the first admin was not created"
            time.sleep(0.1)
        login = {"username": ADMIN["username"], "password": ADMIN["password"]}
        assert client.post("/auth/token", data=login).status_code == 200
    log = (tmp_path / "server.log").read_text()
    assert log.count("alembic upgrade head") == 1, log  # advice once, not per retry
