"""Two server processes on one PostgreSQL share the webhook outbox, as replicas do: changes made
through either are delivered once each (repeats only with the same `webhook-id`), each
employee's in order, never one attempt twice at once, through a receiver outage."""

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SECRET, employee_payload
from tests.test_startup import free_port, server_env, uvicorn, wait_until_up
from tests.webhook_receiver import Receiver

pytestmark = [pytest.mark.ops, pytest.mark.slow, pytest.mark.postgres_only]

ADMIN = ("hook-admin", "hook-admin-password-1")
EMPLOYEES = 8
UPDATES = 4


@pytest.fixture
def servers(database_url: str, tmp_path: Path) -> Iterator[list[str]]:
    """Two single-worker servers, webhook workers on, retries fast, receivers on 127.0.0.1."""
    env = server_env(
        DATABASE_URL=database_url,
        JWT_SECRET_KEY=SECRET,
        FIRST_ADMIN_USERNAME=ADMIN[0],
        FIRST_ADMIN_PASSWORD=ADMIN[1],
        RATE_LIMIT_ENABLED="false",
        WEBHOOK_ALLOW_HTTP="true",
        WEBHOOK_ALLOW_PRIVATE_TARGETS="true",
        WEBHOOK_POLL_SECONDS="0.5",  # a commit wakes them (LISTEN); the poll is the fallback
        WEBHOOK_RETRY_BASE_SECONDS="0.05",
        WEBHOOK_MAX_ATTEMPTS="20",
        WEBHOOK_TIMEOUT_SECONDS="2",
    )
    processes, bases = [], []
    try:
        for name in ("one", "two"):
            folder = tmp_path / name
            folder.mkdir()
            port = free_port()
            processes.append(uvicorn(port, folder, env))
            bases.append(f"http://127.0.0.1:{port}")
            wait_until_up(bases[-1], processes[-1], folder / "server.log")
        yield bases
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=15)


async def sign_in(client: httpx.AsyncClient, base: str) -> dict[str, str]:
    deadline = time.monotonic() + 20
    while True:  # the first admin is created in the background at start-up
        login = await client.post(
            f"{base}/v1/auth/token", data={"username": ADMIN[0], "password": ADMIN[1]}
        )
        if login.status_code == 200:
            return {"Authorization": f"Bearer {login.json()['access_token']}"}
        assert time.monotonic() < deadline, login.text
        await asyncio.sleep(0.2)


async def changes(client: httpx.AsyncClient, bases: list[str], emp_id: int, auth: Any) -> None:
    """A create and updates of one employee, alternating between the servers."""
    created = await client.post(
        f"{bases[0]}/v1/employees/", json=employee_payload(emp_id), headers=auth
    )
    assert created.status_code == 201, created.text
    for n in range(UPDATES):
        base = bases[(n + 1) % 2]
        body = {"city": f"City {n}"}
        changed = await client.patch(f"{base}/v1/employees/{emp_id}", json=body, headers=auth)
        assert changed.status_code == 200, changed.text


async def wait_for(condition: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_two_processes_share_the_outbox(servers: list[str]) -> None:
    receiver = Receiver().start()
    receiver.delay = 0.02  # widens the window in which the two could overlap
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            auth = await sign_in(client, servers[0])
            registered = await client.post(
                f"{servers[1]}/v1/webhooks/",
                json={"url": receiver.url, "event_types": ["employee.created", "employee.updated"]},
                headers=auth,
            )
            assert registered.status_code == 201, registered.text
            receiver.secret = registered.json()["secret"]
            writers = asyncio.gather(
                *(changes(client, servers, 5000 + n, auth) for n in range(EMPLOYEES))
            )
            await wait_for(lambda: len(receiver.delivered()) >= 3, 30)
            receiver.stop()
            deliveries = f"{servers[0]}/v1/webhooks/{registered.json()['id']}/deliveries"
            deadline = time.monotonic() + 30
            while True:  # until an attempt has failed against the stopped receiver
                listed = await client.get(deliveries, params={"limit": 100}, headers=auth)
                if any(delivery["last_error"] for delivery in listed.json()):
                    break
                assert time.monotonic() < deadline, "no attempt met the outage"
                await asyncio.sleep(0.05)
            receiver.start()
            await writers
            expected = EMPLOYEES * (1 + UPDATES)
            await wait_for(
                lambda: len({item.webhook_id for item in receiver.delivered()}) >= expected, 60
            )
            listed = await client.get(deliveries, params={"limit": 100}, headers=auth)
            attempts_made = [delivery["attempts"] for delivery in listed.json()]
    finally:
        receiver.stop()

    delivered = receiver.delivered()
    assert all(item.verified for item in receiver.received)
    ids_of_event: dict[str, set[str]] = defaultdict(set)
    for item in delivered:
        ids_of_event[item.body["data"]["event_id"]].add(item.webhook_id)
    assert len(ids_of_event) == expected
    assert all(len(ids) == 1 for ids in ids_of_event.values())
    seen: set[str] = set()
    versions: dict[int, list[int]] = defaultdict(list)
    for item in delivered:
        if item.webhook_id not in seen:
            seen.add(item.webhook_id)
            versions[item.body["data"]["emp_id"]].append(item.body["data"]["version"])
    assert versions == {5000 + n: list(range(1, UPDATES + 2)) for n in range(EMPLOYEES)}
    assert max(receiver.max_in_flight.values()) == 1
    assert any(attempts > 1 for attempts in attempts_made)  # the outage was felt
