"""GET /employees/changes: every create, change and deletion, oldest first, resumable."""

from collections.abc import Callable
from typing import Any

import pytest
from httpx import AsyncClient, Response

from app.accounts.models import User
from app.changes.events import EventPosition, encode_event_id
from tests.conftest import _client, employee_payload
from tests.feed import FEED, events_after, settled


def next_link(response: Response) -> str:
    link = response.headers["Link"]
    assert link.endswith('>; rel="next"'), link
    return link[1 : -len('>; rel="next"')]


class TestEvents:
    async def test_create_update_delete_in_order_with_the_record_as_each_left_it(
        self, admin_user_client: AsyncClient, normal_user_client: AsyncClient
    ) -> None:
        created = await admin_user_client.post("/employees/", json=employee_payload(7))
        updated = await admin_user_client.patch("/employees/7", json={"city": "Paris"})
        deleted = await admin_user_client.delete("/employees/7")
        assert (created.status_code, updated.status_code, deleted.status_code) == (201, 200, 204)

        events = await settled(normal_user_client, 3)

        assert [e["type"] for e in events] == [
            "employee.created",
            "employee.updated",
            "employee.deleted",
        ]
        assert [e["version"] for e in events] == [1, 2, 3]
        # Read once the record moved on: the events before are rebuilt from the trail.
        assert [e["employee"] for e in await settled(normal_user_client, 3)] == [
            created.json(),
            updated.json(),
            None,
        ]
        assert {e["emp_id"] for e in events} == {7}
        assert events[0]["employee"] == created.json()
        assert events[1]["employee"] == updated.json()
        assert events[2]["employee"] is None
        assert events[0]["changed_fields"] == ["emp_id", "emp_name", "city", "country", "emp_dob"]
        assert events[1]["changed_fields"] == ["city"]
        assert events[1]["occurred_at"] == updated.json()["updated_at"]
        assert len({e["event_id"] for e in events}) == 3
        # Who changed it is the history's business (admins and auditors), not the feed's.
        assert not {"actor_id", "actor_username", "request_id"} & set().union(*events)

    async def test_a_write_that_fails_leaves_no_event(self, admin_user_client: AsyncClient) -> None:
        assert (
            await admin_user_client.post("/employees/", json=employee_payload(8))
        ).status_code == 201
        duplicate = await admin_user_client.post("/employees/", json=employee_payload(8))
        stale = await admin_user_client.patch(
            "/employees/8", json={"city": "Oslo"}, headers={"If-Match": '"stale"'}
        )
        unchanged = await admin_user_client.patch("/employees/8", json={"city": "London"})

        assert (duplicate.status_code, stale.status_code, unchanged.status_code) == (409, 412, 200)
        assert [e["type"] for e in await settled(admin_user_client, 1)] == ["employee.created"]

    async def test_an_imported_file_is_one_created_event_per_row(
        self, admin_user_client: AsyncClient
    ) -> None:
        csv = (
            "emp_id,emp_name,city,country,emp_dob\n"
            "21,A B,Rome,Italy,1980-01-02\n22,C D,Oslo,Norway,1981-03-04\n"
        )
        imported = await admin_user_client.post(
            "/employees/import", files={"file": ("staff.csv", csv, "text/csv")}
        )
        assert imported.status_code in (200, 201), imported.text

        events = await settled(admin_user_client, 2)

        assert [(e["type"], e["emp_id"]) for e in events] == [
            ("employee.created", 21),
            ("employee.created", 22),
        ]
        for event in events:
            read = await admin_user_client.get(f"/employees/{event['emp_id']}")
            assert event["employee"] == read.json()

    async def test_a_record_older_than_its_trail_is_rebuilt_as_each_change_left_it(
        self, admin_user_client: AsyncClient, make_employees: Callable[..., Any]
    ) -> None:
        await make_employees({"emp_id": 31, "city": "Rome"})  # written without an audit row
        first = await admin_user_client.patch("/employees/31", json={"country": "Italy"})
        second = await admin_user_client.patch("/employees/31", json={"city": "Milan"})

        events = await settled(admin_user_client, 2)

        assert [e["employee"] for e in events] == [first.json(), second.json()]
        assert events[0]["employee"]["city"] == "Rome"

    async def test_a_record_older_than_its_trail_is_completed_from_the_table(
        self, admin_user_client: AsyncClient, make_employees: Callable[..., Any]
    ) -> None:
        await make_employees({"emp_id": 30})  # written without an audit row
        patched = await admin_user_client.patch("/employees/30", json={"country": "France"})

        (event,) = await settled(admin_user_client, 1)

        assert event["type"] == "employee.updated"
        assert event["employee"] == patched.json()


class TestPaging:
    async def test_after_is_exclusive_and_the_link_resumes(
        self, admin_user_client: AsyncClient
    ) -> None:
        for emp_id in range(1, 6):
            await admin_user_client.post("/employees/", json=employee_payload(emp_id))
        await settled(admin_user_client, 5)

        first = await admin_user_client.get(FEED, params={"limit": 2})
        second = await admin_user_client.get(next_link(first))
        third = await admin_user_client.get(next_link(second))
        empty = await admin_user_client.get(next_link(third))
        again = await admin_user_client.get(next_link(empty))

        pages = [first.json(), second.json(), third.json(), empty.json(), again.json()]
        assert [[e["emp_id"] for e in page] for page in pages] == [[1, 2], [3, 4], [5], [], []]
        # An empty page links to the same position: the next poll asks again from there.
        assert next_link(empty) == next_link(third)
        await admin_user_client.post("/employees/", json=employee_payload(6))
        await settled(admin_user_client, 6)
        assert [e["emp_id"] for e in (await admin_user_client.get(next_link(again))).json()] == [6]

    async def test_from_the_beginning_without_after(self, admin_user_client: AsyncClient) -> None:
        await admin_user_client.post("/employees/", json=employee_payload(1))
        await settled(admin_user_client, 1)
        response = await admin_user_client.get(FEED)
        assert "after=" in next_link(response)
        assert "limit=100" in next_link(response)
        empty = await admin_user_client.get(FEED)
        assert len(empty.json()) == 1

    @pytest.mark.parametrize("limit", [0, 1001, -1, "many"])
    async def test_limit_out_of_range_is_422(
        self, normal_user_client: AsyncClient, limit: Any
    ) -> None:
        assert (await normal_user_client.get(FEED, params={"limit": limit})).status_code == 422

    @pytest.mark.parametrize(
        "after",
        [
            "nonsense",
            "ev_",
            "ev_" + "A" * 21 + "!",
            "ev_" + "é" * 22,
            "ev_" + "A" * 200,
            "eyJ0eCI6MX0",  # another cursor's shape
            encode_event_id(EventPosition(0, 0))[:-1] + "B",  # an alias of a position
        ],
    )
    async def test_malformed_after_is_422(
        self, normal_user_client: AsyncClient, after: str
    ) -> None:
        response = await normal_user_client.get(FEED, params={"after": after})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", "after"]

    async def test_an_event_id_this_feed_never_served_is_422(
        self, admin_user_client: AsyncClient
    ) -> None:
        await admin_user_client.post("/employees/", json=employee_payload(1))
        (event,) = await settled(admin_user_client, 1)
        made_up = encode_event_id(EventPosition(999_999, 999_999))
        assert (await admin_user_client.get(FEED, params={"after": made_up})).status_code == 422
        assert await events_after(admin_user_client, event["event_id"]) == []


class TestAccess:
    async def test_anonymous_is_401(self, client: AsyncClient) -> None:
        response = await client.get(FEED)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"

    async def test_every_role_reads_it(
        self,
        admin_user_client: AsyncClient,
        normal_user_client: AsyncClient,
        auditor_user_client: AsyncClient,
    ) -> None:
        await admin_user_client.post("/employees/", json=employee_payload(3))
        for reader in (normal_user_client, auditor_user_client, admin_user_client):
            assert [e["emp_id"] for e in await settled(reader, 1)] == [3]

    async def test_hidden_birth_dates_stay_hidden(
        self,
        app_with: Callable[..., Any],
        admin_user: User,
        normal_user: User,
        token_for: Callable[[User], str],
    ) -> None:
        app = await app_with(employee_dob_visible_to="admins")
        admin = _client(app, token_for(admin_user))
        user = _client(app, token_for(normal_user))
        async with admin, user:
            await admin.post("/employees/", json=employee_payload(4))
            await admin.patch("/employees/4", json={"emp_dob": "1990-01-01"})
            seen_by_user = await settled(user, 2)
            seen_by_admin = await settled(admin, 2)

        assert [e["changed_fields"] for e in seen_by_user] == [
            ["emp_id", "emp_name", "city", "country"],
            [],
        ]
        assert all("emp_dob" not in e["employee"] for e in seen_by_user)
        assert seen_by_admin[1]["changed_fields"] == ["emp_dob"]
        assert seen_by_admin[1]["employee"]["emp_dob"] == "1990-01-01"
