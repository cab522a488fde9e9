"""Webhooks on PostgreSQL under load: concurrent writers, two workers with engines of their own
sharing one outbox (as two server processes do), and a receiver stopped mid-run and started
again. Every event arrives, each employee's in order, a repeat only ever with the same
`webhook-id`, and never one attempt twice at once."""

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlmodel import col

from app.core.config import Settings
from app.db.engine import Database
from app.webhooks.delivery import new_client
from app.webhooks.models import WebhookDelivery
from app.webhooks.worker import WebhookWorker
from tests.conftest import employee_payload
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.postgres_only

EMPLOYEES = 6
UPDATES = 5  # each employee: a create and this many updates
CITIES = ["Paris", "Rome", "Oslo", "Lima", "Kyiv", "Pune"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "webhook_allow_http": True,
            "webhook_allow_private_targets": True,
            "webhook_timeout_seconds": 1.0,
            "webhook_retry_base_seconds": 0.02,
            "webhook_max_attempts": 20,  # the receiver's outage must not fail a delivery
            "webhook_poll_seconds": 0.1,
        }
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
async def workers(settings: Settings, database: Database) -> AsyncIterator[list[WebhookWorker]]:
    """Two workers, the second with an engine (a pool of connections) of its own."""
    other = Database.from_settings(settings)
    try:
        async with new_client() as first, new_client() as second:
            yield [
                WebhookWorker(settings, database, first),
                WebhookWorker(settings, other, second),
            ]
    finally:
        await other.engine.dispose()


async def wait_for(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def settled(database: Database, count: int, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    statement = select(WebhookDelivery).where(col(WebhookDelivery.state) == "delivered")
    while True:
        async with database.sessions() as session:
            if len((await session.execute(statement)).all()) >= count:
                return
        assert time.monotonic() < deadline, "the outcomes were not recorded in time"
        await asyncio.sleep(0.02)


async def failed_once(database: Database, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    statement = select(WebhookDelivery).where(col(WebhookDelivery.last_error).is_not(None))
    while True:
        async with database.sessions() as session:
            if (await session.execute(statement)).first() is not None:
                return
        assert time.monotonic() < deadline, "no attempt met the outage"
        await asyncio.sleep(0.02)


async def writer(client: AsyncClient, emp_id: int) -> None:
    created = await client.post("/v1/employees/", json=employee_payload(emp_id))
    assert created.status_code == 201, created.text
    for city in CITIES[:UPDATES]:
        changed = await client.patch(f"/v1/employees/{emp_id}", json={"city": city})
        assert changed.status_code == 200, changed.text


async def test_every_event_once_in_order_through_an_outage(
    admin_user_client: AsyncClient,
    receiver: Receiver,
    workers: list[WebhookWorker],
    database: Database,
):
    created = await admin_user_client.post(
        "/v1/webhooks/",
        json={"url": receiver.url, "event_types": ["employee.created", "employee.updated"]},
    )
    receiver.secret = created.json()["secret"]
    receiver.delay = 0.01  # widens the window in which two workers could overlap
    expected = EMPLOYEES * (1 + UPDATES)
    tasks = [asyncio.create_task(worker.run()) for worker in workers]
    try:
        writers = asyncio.gather(*(writer(admin_user_client, 2000 + n) for n in range(EMPLOYEES)))
        await wait_for(lambda: len(receiver.delivered()) >= 3, 20)
        receiver.stop()
        await failed_once(database)  # an attempt met the outage; it will be retried
        receiver.start()
        await writers
        await wait_for(
            lambda: len({item.webhook_id for item in receiver.delivered()}) >= expected, 30
        )
        await settled(database, expected)  # each outcome recorded, not only answered
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    delivered = receiver.delivered()
    assert all(item.verified for item in receiver.received)
    # Every event, and a repeat only with the same webhook-id.
    ids_of_event: dict[str, set[str]] = defaultdict(set)
    for item in delivered:
        ids_of_event[item.body["data"]["event_id"]].add(item.webhook_id)
    assert len(ids_of_event) == expected
    assert all(len(ids) == 1 for ids in ids_of_event.values())
    # In order per employee (first arrivals).
    seen: set[str] = set()
    versions: dict[int, list[int]] = defaultdict(list)
    for item in delivered:
        if item.webhook_id not in seen:
            seen.add(item.webhook_id)
            versions[item.body["data"]["emp_id"]].append(item.body["data"]["version"])
    assert versions == {2000 + n: list(range(1, UPDATES + 2)) for n in range(EMPLOYEES)}
    # Never one attempt twice at once.
    assert max(receiver.max_in_flight.values()) == 1
    async with database.sessions() as session:
        rows = (await session.execute(select(WebhookDelivery))).scalars().all()
    assert {row.state for row in rows} == {"delivered"} and len(rows) == expected
    assert any(row.attempts > 1 for row in rows)  # the outage was felt, and ridden out


async def test_the_server_runs_the_worker(
    app_with: Callable[..., Any], admin_user_client: AsyncClient, receiver: Receiver
):
    """The lifespan starts the worker (WEBHOOK_WORKER_ENABLED) and stops it at shutdown."""
    created = await admin_user_client.post(
        "/v1/webhooks/", json={"url": receiver.url, "event_types": ["employee.created"]}
    )
    receiver.secret = created.json()["secret"]
    await app_with(webhook_worker_enabled=True)
    await admin_user_client.post("/v1/employees/", json=employee_payload(3001))
    await wait_for(lambda: len(receiver.delivered()) == 1, 10)
    assert receiver.delivered()[0].verified


async def test_a_commit_wakes_the_worker(
    app_with: Callable[..., Any], admin_user_client: AsyncClient, receiver: Receiver
):
    """PostgreSQL's NOTIFY of a committed change wakes the worker long before its next poll."""
    created = await admin_user_client.post(
        "/v1/webhooks/", json={"url": receiver.url, "event_types": ["employee.created"]}
    )
    receiver.secret = created.json()["secret"]
    await app_with(webhook_worker_enabled=True, webhook_poll_seconds=60)
    await asyncio.sleep(0.5)  # the worker's first round, and its listening connection
    await admin_user_client.post("/v1/employees/", json=employee_payload(3002))
    await wait_for(lambda: len(receiver.delivered()) == 1, 20)
