"""The feed's promise to a sync client, on real PostgreSQL: polling with `after` never misses an
event and never repeats one, although transactions commit in another order than they took their
ids (a transaction that started first may commit last)."""

import asyncio
import random
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts.models import User
from app.changes import crud as feed_crud
from app.db.driver import transaction
from app.employees import crud
from app.employees.history.models import Actor
from tests.conftest import employee_payload
from tests.feed import events_after, settled

pytestmark = pytest.mark.postgres_only

WRITERS, CHANGES_EACH, POLLERS, SHARED = 20, 50, 3, 5


class TestLateCommits:
    async def test_a_transaction_numbered_first_and_committed_last_is_not_overtaken(
        self,
        admin_user_client: AsyncClient,
        admin_user: User,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        await admin_user_client.post("/employees/", json=employee_payload(1))
        (start,) = await settled(admin_user_client, 1)
        actor = Actor(user_id=admin_user.id, username=admin_user.username, request_id=None)

        async with sessionmaker() as held, transaction(held):
            # The app's own update path, left uncommitted: its transaction takes its id first.
            _, record = await crud.lock_employee_as(
                session=held, emp_id=1, user_id=admin_user.id, sign_in_id=admin_user.id
            )
            assert record is not None
            values = {name: getattr(record, name) for name in crud.WRITABLE} | {"city": "Late"}
            changes = {"city": {"before": record.city, "after": "Late"}}
            assert await crud.update_employee(
                session=held, employee=record, values=values, changes=changes, actor=actor
            )
            # A later transaction commits first: the feed holds it back until the first ends.
            created = await admin_user_client.post("/employees/", json=employee_payload(2))
            assert created.status_code == 201
            assert await events_after(admin_user_client, start["event_id"]) == []
            async with sessionmaker() as session:
                assert await feed_crud.held_back(session=session)

        later = await settled(admin_user_client, 2, start["event_id"])
        async with sessionmaker() as session:
            assert not await feed_crud.held_back(session=session)
        assert [(e["type"], e["emp_id"]) for e in later] == [
            ("employee.updated", 1),
            ("employee.created", 2),
        ]
        assert later[0]["employee"]["city"] == "Late"


class TestConcurrentWritersAndPollers:
    async def test_every_poller_gets_each_event_exactly_once_in_version_order(
        self,
        admin_user_client: AsyncClient,
        normal_user_client: AsyncClient,
        client_for: Callable[[User], AsyncClient],
        normal_user: User,
    ) -> None:
        for emp_id in range(1, SHARED + 1):
            await admin_user_client.post("/employees/", json=employee_payload(emp_id))
        start = (await settled(admin_user_client, SHARED))[-1]["event_id"]
        done = asyncio.Event()

        async def write(writer: int) -> list[int]:
            own = 100 + writer
            statuses = [
                (
                    await admin_user_client.post("/employees/", json=employee_payload(own))
                ).status_code
            ]
            for change in range(1, CHANGES_EACH):
                target = own if change % 2 else random.randint(1, SHARED)
                city = f"w{writer}-c{change}"  # always a change: every write is an event
                response = await admin_user_client.patch(
                    f"/employees/{target}", json={"city": city}
                )
                statuses.append(response.status_code)
            return statuses

        async def poll(client: AsyncClient) -> list[dict[str, Any]]:
            seen: list[dict[str, Any]] = []
            after = start
            while len(seen) < WRITERS * CHANGES_EACH and not (done.is_set() and timed_out()):
                page = await events_after(client, after, limit=random.choice((7, 50, 1000)))
                seen += page
                if page:
                    after = page[-1]["event_id"]
                else:
                    await asyncio.sleep(0.005)
            await asyncio.sleep(0.2)
            return seen + await events_after(client, after)  # and nothing more

        deadline = asyncio.get_running_loop().time() + 60

        def timed_out() -> bool:
            return asyncio.get_running_loop().time() > deadline

        pollers = [
            asyncio.create_task(poll(client))
            for client in (normal_user_client, admin_user_client, client_for(normal_user))
        ]
        try:
            writes = await asyncio.gather(*(write(w) for w in range(WRITERS)))
        finally:
            done.set()
        results = await asyncio.wait_for(asyncio.gather(*pollers), timeout=120)

        assert [code for statuses in writes for code in statuses if code not in (200, 201)] == []
        for seen in results:
            assert len(seen) == WRITERS * CHANGES_EACH == 1000
            assert len({e["event_id"] for e in seen}) == 1000
            versions: dict[int, list[int]] = defaultdict(list)
            for event in seen:
                versions[event["emp_id"]].append(event["version"])
                assert event["employee"]["version"] == event["version"]
            for emp_id, found in versions.items():
                first = 1 if emp_id > SHARED else 2
                assert found == list(range(first, first + len(found))), emp_id
        assert results[0] == results[1] == results[2]
