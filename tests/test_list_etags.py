"""Weak ETags on the three lists (employees, an employee's history, accounts): the same page
polled with its tag is a 304 with no body; what comes before a 304 (401, 403, 404, 422) still
does. How the tag follows changes to a page: tests/test_list_etag_changes.py."""

import re
from dataclasses import dataclass

import pytest
from httpx import AsyncClient, Response

from app.http.page_tags import page_etag
from tests.conftest import employee_payload

WEAK_TAG = re.compile(r'W/"[0-9a-f]{32}"')


async def poll(client: AsyncClient, url: str, tag: str | None = None) -> Response:
    return await client.get(url, headers={} if tag is None else {"If-None-Match": tag})


def weak_tag(response: Response) -> str:
    """The tag of a 200 page, checked to be weak."""
    assert response.status_code == 200, response.text
    tag = response.headers["etag"]
    assert WEAK_TAG.fullmatch(tag), tag
    return tag


@dataclass
class Listing:
    client: AsyncClient  # signed in as an account that may read the list
    url: str


@pytest.fixture(params=["employees", "history", "users"])
async def listing(
    request, make_employees, make_user, admin_user_client, normal_user_client
) -> Listing:
    """A list with three rows, read two a page."""
    if request.param == "employees":
        await make_employees(*({"emp_id": n} for n in (1, 2, 3)))
        return Listing(normal_user_client, "/employees/?limit=2")
    if request.param == "history":
        await admin_user_client.post("/employees/", json=employee_payload())
        for city in ("Paris", "Rome"):
            await admin_user_client.patch("/employees/1001", json={"city": city})
        return Listing(admin_user_client, "/employees/1001/history?limit=2")
    await make_user("third.user")  # with the admin and the regular user
    return Listing(admin_user_client, "/users/?limit=2")


class TestEveryList:
    async def test_a_page_carries_a_weak_etag(self, listing):
        response = await poll(listing.client, listing.url)

        weak_tag(response)
        assert len(response.json()) == 2
        assert response.headers["x-total-count"] == "3"

    async def test_the_same_request_with_its_tag_gets_304_and_no_body(self, listing):
        first = await poll(listing.client, listing.url)
        tag = weak_tag(first)

        again = await poll(listing.client, listing.url, tag)

        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["etag"] == tag
        assert "content-type" not in again.headers
        # What a 304 must repeat of the 200 (RFC 9110 15.4.5): here, Cache-Control.
        assert again.headers["cache-control"] == first.headers["cache-control"] == "no-store"

    @pytest.mark.parametrize(
        "header", ["*", '"other", {tag}', '{tag} , W/"other"', "{strong}", "  {tag}  "]
    )
    async def test_star_lists_and_weak_comparison_match(self, listing, header):
        tag = weak_tag(await poll(listing.client, listing.url))
        value = header.format(tag=tag, strong=tag.removeprefix("W/"))

        response = await poll(listing.client, listing.url, value)

        assert response.status_code == 304
        assert response.headers["etag"] == tag

    @pytest.mark.parametrize("header", ['W/"0123abcd"', '"0123abcd", W/"fedc"'])
    async def test_other_tags_get_the_page(self, listing, header):
        first = await poll(listing.client, listing.url)

        response = await poll(listing.client, listing.url, header)

        assert response.status_code == 200
        assert response.json() == first.json()
        assert response.headers["etag"] == first.headers["etag"]

    @pytest.mark.parametrize("header", ["abc", '"unterminated', 'W/"a" "b"', ",", "", "W/*"])
    async def test_a_malformed_if_none_match_is_422(self, listing, header):
        response = await poll(listing.client, listing.url, header)

        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["header", "if-none-match"]

    async def test_an_overlong_if_none_match_is_422(self, listing):
        response = await poll(listing.client, listing.url, ", ".join(['W/"0123abcd"'] * 100))

        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["header", "if-none-match"]

    async def test_without_a_token_it_is_401_not_304(self, listing, client):
        response = await poll(client, listing.url, "*")

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"

    @pytest.mark.parametrize("query", ["&offset=-1", "&offset=x", "&offset=2147483648"])
    async def test_an_invalid_query_is_422_not_304(self, listing, query):
        response = await poll(listing.client, listing.url + query, "*")

        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"][0] == "query"


async def test_a_regular_user_gets_403_not_304_on_accounts(normal_user_client):
    response = await poll(normal_user_client, "/users/", "*")

    assert response.status_code == 403


async def test_an_unknown_employees_history_is_404_not_304(admin_user_client):
    response = await poll(admin_user_client, "/employees/4242/history", "*")

    assert response.status_code == 404


async def test_a_forged_cursor_is_422_not_304(normal_user_client, make_employees):
    await make_employees({"emp_id": 1})

    response = await poll(normal_user_client, "/employees/?cursor=bm90LWEtY3Vyc29y", "*")

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "cursor"]


async def test_the_list_without_a_slash_is_tagged_too(normal_user_client, make_employees):
    await make_employees({"emp_id": 1})
    tag = weak_tag(await poll(normal_user_client, "/employees"))

    assert (await poll(normal_user_client, "/employees", tag)).status_code == 304


PAGE_HEADERS = {"X-Total-Count": "3", "Link": '</employees/?offset=0&limit=2>; rel="first"'}


class TestPageEtag:
    def test_the_body_and_each_page_header_count(self):
        tags = {
            page_etag(b"[]", PAGE_HEADERS),
            page_etag(b"[ ]", PAGE_HEADERS),
            page_etag(b"[]", PAGE_HEADERS | {"X-Total-Count": "4"}),
            page_etag(b"[]", PAGE_HEADERS | {"Link": '</users/?offset=0&limit=2>; rel="first"'}),
            page_etag(b"[]", PAGE_HEADERS | {"X-Total-Count-Estimated": "true"}),
        }

        assert len(tags) == 5
        assert all(WEAK_TAG.fullmatch(tag) for tag in tags)

    def test_other_headers_do_not(self):
        other = PAGE_HEADERS | {"X-Request-ID": "abc", "Content-Type": "application/json"}

        assert page_etag(b"[]", other) == page_etag(b"[]", PAGE_HEADERS)
