"""A list page's weak ETag follows the page: a poll with the old tag gets the new page (200) when
a row on it changes, is added or removed, or only its count changes; it stays a 304 while
changes happen elsewhere."""

from typing import Any

import pytest
from httpx import AsyncClient, Response

from tests.conftest import employee_payload
from tests.test_employees_read import emp_ids, links
from tests.test_list_etags import poll, weak_tag


async def changed(client: AsyncClient, url: str, old: str) -> Response:
    """The page polled with its old tag: the new page, whose own tag then gets a 304."""
    response = await poll(client, url, old)
    new = weak_tag(response)
    assert new != old
    assert (await poll(client, url, new)).status_code == 304
    return response


async def unchanged(client: AsyncClient, url: str, tag: str) -> None:
    response = await poll(client, url, tag)
    assert response.status_code == 304 and response.content == b""


class TestEmployeeList:
    URL = "/employees/?limit=2"

    @pytest.fixture
    async def tag(self, make_employees, normal_user_client) -> str:
        rows = ({"emp_id": n, "emp_name": f"Name {n}", "city": f"City {n}"} for n in (1, 3, 5))
        await make_employees(*rows)
        return weak_tag(await poll(normal_user_client, self.URL))

    async def test_a_row_on_the_page_changed(self, normal_user_client, admin_user_client, tag):
        await admin_user_client.patch("/employees/3", json={"city": "Paris"})

        response = await changed(normal_user_client, self.URL, tag)

        assert [(row["city"], row["version"]) for row in response.json()] == [
            ("City 1", 1),
            ("Paris", 2),
        ]

    async def test_a_row_added_on_the_page(self, normal_user_client, admin_user_client, tag):
        await admin_user_client.post("/employees/", json=employee_payload(2))

        response = await changed(normal_user_client, self.URL, tag)

        assert emp_ids(response) == [1, 2]
        assert response.headers["x-total-count"] == "4"

    async def test_a_row_deleted_from_the_page(self, normal_user_client, admin_user_client, tag):
        await admin_user_client.delete("/employees/3")

        response = await changed(normal_user_client, self.URL, tag)

        assert emp_ids(response) == [1, 5]

    async def test_a_row_added_on_another_page_changes_the_count_alone(
        self, normal_user_client, admin_user_client, tag
    ):
        before = await poll(normal_user_client, self.URL)
        await admin_user_client.post("/employees/", json=employee_payload(7))

        response = await changed(normal_user_client, self.URL, tag)

        assert response.content == before.content
        assert response.headers["link"] == before.headers["link"]
        assert (before.headers["x-total-count"], response.headers["x-total-count"]) == ("3", "4")

    async def test_a_change_on_another_page_keeps_the_tag(
        self, normal_user_client, admin_user_client, tag
    ):
        await admin_user_client.patch("/employees/5", json={"city": "Paris"})

        await unchanged(normal_user_client, self.URL, tag)

    async def test_a_cursor_page_has_its_own_tag(self, normal_user_client, admin_user_client, tag):
        following = links(await poll(normal_user_client, self.URL))["next"]
        assert "cursor=" in following
        cursor_tag = weak_tag(await poll(normal_user_client, following))
        assert cursor_tag != tag
        await unchanged(normal_user_client, following, cursor_tag)

        await admin_user_client.patch("/employees/5", json={"city": "Paris"})
        response = await changed(normal_user_client, following, cursor_tag)

        assert [(row["emp_id"], row["version"]) for row in response.json()] == [(5, 2)]
        await unchanged(normal_user_client, self.URL, tag)

    async def test_pages_filters_and_sorts_have_tags_of_their_own(self, normal_user_client, tag):
        urls = [
            f"{self.URL}&offset=1",
            f"{self.URL}&offset=2",
            f"{self.URL}&sort_by=emp_name",
            f"{self.URL}&order=desc",
            f"{self.URL}&city=city",  # every row, as without the filter
            f"{self.URL}&city=city 3",
            "/employees/?limit=3",
        ]
        tags = [weak_tag(await poll(normal_user_client, url)) for url in urls]

        assert len({tag, *tags}) == len(urls) + 1


class TestHistoryList:
    URL = "/employees/1001/history?limit=2"

    @pytest.fixture
    async def tag(self, admin_user_client) -> str:
        await admin_user_client.post("/employees/", json=employee_payload())
        for city in ("Paris", "Rome"):
            await admin_user_client.patch("/employees/1001", json={"city": city})
        return weak_tag(await poll(admin_user_client, self.URL))

    async def test_a_change_to_the_employee_lands_on_the_first_page(self, admin_user_client, tag):
        await admin_user_client.patch("/employees/1001", json={"city": "Oslo"})

        response = await changed(admin_user_client, self.URL, tag)

        assert [entry["version"] for entry in response.json()] == [4, 3]

    async def test_deleting_the_employee_adds_its_last_entry(self, admin_user_client, tag):
        await admin_user_client.delete("/employees/1001")

        response = await changed(admin_user_client, self.URL, tag)

        assert response.json()[0]["action"] == "delete"

    async def test_the_count_alone_changes_a_page_past_the_end(self, admin_user_client, tag):
        url = f"{self.URL}&offset=10"
        before = await poll(admin_user_client, url)
        await admin_user_client.patch("/employees/1001", json={"city": "Oslo"})

        response = await changed(admin_user_client, url, weak_tag(before))

        assert response.json() == before.json() == []
        assert (before.headers["x-total-count"], response.headers["x-total-count"]) == ("3", "4")

    async def test_another_employees_changes_keep_the_tag(self, admin_user_client, tag):
        await admin_user_client.post("/employees/", json=employee_payload(1002))
        await admin_user_client.patch("/employees/1002", json={"city": "Oslo"})

        await unchanged(admin_user_client, self.URL, tag)

    async def test_older_pages_have_tags_of_their_own(self, admin_user_client, tag):
        older = weak_tag(await poll(admin_user_client, f"{self.URL}&offset=2"))

        assert older != tag


class TestUserList:
    URL = "/users/?limit=10"

    @pytest.fixture
    async def third(self, make_user) -> Any:
        return await make_user("third.user")

    @pytest.fixture
    async def tag(self, admin_user_client, normal_user, third) -> str:
        return weak_tag(await poll(admin_user_client, self.URL))

    async def test_an_account_on_the_page_changed(self, admin_user_client, third, tag):
        await admin_user_client.patch(f"/users/{third.id}", json={"is_active": False})

        response = await changed(admin_user_client, self.URL, tag)

        active = {user["username"]: user["is_active"] for user in response.json()}
        assert active["third.user"] is False

    async def test_an_account_added(self, admin_user_client, client, tag):
        body = {"username": "fourth.user", "password": "a long enough password"}
        assert (await client.post("/auth/register", json=body)).status_code == 201

        response = await changed(admin_user_client, self.URL, tag)

        assert [user["username"] for user in response.json()][-1] == "fourth.user"

    async def test_an_account_deleted(self, admin_user_client, third, tag):
        await admin_user_client.delete(f"/users/{third.id}")

        response = await changed(admin_user_client, self.URL, tag)

        assert "third.user" not in {user["username"] for user in response.json()}

    async def test_an_account_added_on_another_page_changes_the_count_alone(
        self, admin_user_client, make_user, tag
    ):
        url = "/users/?limit=1"
        before = await poll(admin_user_client, url)
        await make_user("fourth.user")

        response = await changed(admin_user_client, url, weak_tag(before))

        assert response.content == before.content
        assert response.headers["link"] == before.headers["link"]
        assert (before.headers["x-total-count"], response.headers["x-total-count"]) == ("3", "4")

    async def test_pages_have_tags_of_their_own(self, admin_user_client, tag):
        urls = ["/users/?limit=1", "/users/?limit=1&offset=1", "/users/?limit=1&offset=2"]
        tags = [weak_tag(await poll(admin_user_client, url)) for url in urls]

        assert len({tag, *tags}) == len(urls) + 1
