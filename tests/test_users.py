"""Account endpoints: `GET /users/me` and the admin-only `GET /users/`."""

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from httpx import AsyncClient, Response

from app.accounts.models import User

USER_FIELDS = {"id", "username", "role", "is_admin", "is_active", "created_at"}


def link_offsets(response: Response) -> dict[str, tuple[int, int]]:
    """rel -> (offset, limit) from the `Link` header."""
    result = {}
    for rel, link in response.links.items():
        query = parse_qs(urlsplit(link["url"]).query)
        result[rel] = (int(query["offset"][0]), int(query["limit"][0]))
    return result


class TestReadCurrentUser:
    async def test_returns_own_account_without_hash(
        self, normal_user_client: AsyncClient, normal_user: User
    ) -> None:
        response = await normal_user_client.get("/users/me")

        assert response.status_code == 200
        body = response.json()
        assert set(body) == USER_FIELDS
        assert body["id"] == str(normal_user.id)
        assert body["username"] == "jane.doe"
        assert body["is_admin"] is False
        assert body["is_active"] is True
        assert body["created_at"]
        assert "password" not in response.text
        assert normal_user.hashed_password not in response.text

    async def test_admin_sees_own_account(
        self, admin_user_client: AsyncClient, admin_user: User, normal_user: User
    ) -> None:
        response = await admin_user_client.get("/users/me")

        assert response.status_code == 200
        assert response.json()["id"] == str(admin_user.id)
        assert response.json()["is_admin"] is True

    async def test_anonymous_gets_401_with_bearer_challenge(self, client: AsyncClient) -> None:
        response = await client.get("/users/me")

        assert response.status_code == 401
        assert response.json() == {"detail": "Not authenticated"}
        assert response.headers["www-authenticate"] == "Bearer"


class TestListUsers:
    @pytest.mark.parametrize("path", ["/users/", "/users"])
    async def test_admin_lists_all_accounts(
        self, admin_user_client: AsyncClient, admin_user: User, normal_user: User, path: str
    ) -> None:
        response = await admin_user_client.get(path)

        assert response.status_code == 200  # not a 307 redirect to the other spelling
        body = response.json()
        assert [user["username"] for user in body] == ["root.admin", "jane.doe"]
        assert all(set(user) == USER_FIELDS for user in body)
        assert "password" not in response.text
        assert admin_user.hashed_password not in response.text
        assert response.headers["x-total-count"] == "2"

    @pytest.mark.parametrize("path", ["/users/", "/users"])
    async def test_regular_user_gets_403(self, normal_user_client: AsyncClient, path: str) -> None:
        response = await normal_user_client.get(path)

        assert response.status_code == 403
        assert response.json() == {"detail": "Administrator or auditor privileges are required"}
        assert "x-total-count" not in response.headers

    @pytest.mark.parametrize("path", ["/users/", "/users"])
    async def test_anonymous_gets_401(self, client: AsyncClient, path: str) -> None:
        response = await client.get(path)

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {"detail": "Not authenticated"}

    async def test_pages_with_total_count_and_links(
        self, admin_user_client: AsyncClient, admin_user: User, make_user: Callable[..., Any]
    ) -> None:
        for n in range(4):
            await make_user(f"user.{n}")
        everyone = ["root.admin", "user.0", "user.1", "user.2", "user.3"]

        pages = [
            await admin_user_client.get("/users/", params={"offset": offset, "limit": 2})
            for offset in (0, 2, 4)
        ]

        assert [r.status_code for r in pages] == [200, 200, 200]
        assert [r.headers["x-total-count"] for r in pages] == ["5", "5", "5"]
        assert [u["username"] for r in pages for u in r.json()] == everyone
        assert link_offsets(pages[0]) == {"first": (0, 2), "next": (2, 2)}
        assert link_offsets(pages[1]) == {"first": (0, 2), "prev": (0, 2), "next": (4, 2)}
        assert link_offsets(pages[2]) == {"first": (0, 2), "prev": (2, 2)}

    async def test_single_page_has_only_a_first_link(
        self, admin_user_client: AsyncClient, normal_user: User
    ) -> None:
        response = await admin_user_client.get("/users/")

        assert response.status_code == 200
        assert len(response.json()) == 2
        assert link_offsets(response) == {"first": (0, 100)}

    async def test_offset_beyond_the_end_is_empty_with_prev_to_last_page(
        self, admin_user_client: AsyncClient, make_user: Callable[..., Any]
    ) -> None:
        for n in range(4):
            await make_user(f"user.{n}")

        response = await admin_user_client.get("/users/", params={"offset": 50, "limit": 2})

        assert response.status_code == 200
        assert response.json() == []
        assert response.headers["x-total-count"] == "5"
        assert link_offsets(response) == {"first": (0, 2), "prev": (3, 2)}

    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"limit": 0}, "limit"),
            ({"limit": 101}, "limit"),
            ({"limit": -1}, "limit"),
            ({"offset": -1}, "offset"),
            ({"offset": "abc"}, "offset"),
        ],
    )
    async def test_out_of_range_paging_gets_422(
        self, admin_user_client: AsyncClient, params: dict[str, Any], field: str
    ) -> None:
        response = await admin_user_client.get("/users/", params=params)

        assert response.status_code == 422
        assert [item["loc"] for item in response.json()["detail"]] == [["query", field]]

    async def test_limit_100_is_accepted(self, admin_user_client: AsyncClient) -> None:
        response = await admin_user_client.get("/users/", params={"limit": 100})

        assert response.status_code == 200
        assert [u["username"] for u in response.json()] == ["root.admin"]
