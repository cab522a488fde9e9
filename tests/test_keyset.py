"""Keyset pagination of the employee list: `Link: next` carries a cursor, deep pages stay cheap."""

import base64
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, strategies
from hypothesis import settings as hypothesis_settings
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import employee_payload, make_settings
from tests.test_employees_read import emp_ids, links

NAMES = ["Ada", "Bob", "Bob", "Cy", "Dee", "Bob", "Eve", "Ada", "Fay", "Gus", "Bob", "Hal"]


async def walk(client: Any, url: str) -> tuple[list[int], int]:
    seen: list[int] = []
    pages = 0
    while url:
        response = await client.get(url)
        assert response.status_code == 200, response.text
        seen += emp_ids(response)
        url = links(response).get("next", "")
        pages += 1
    return seen, pages


@contextmanager
def captured(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL statements sent while inside the block."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


SORT_KEYS = ["emp_id", "emp_name", "emp_dob", "city", "country"]
# Anything JSON can carry, weighted towards what a cursor holds: its keys, dates, numbers past the
# int32 bounds, and text with surrogates and control characters (which JSON escapes can spell).
# Joined from a list: `text()` drops the surrogates its alphabet offers.
HOSTILE_TEXT = strategies.lists(
    strategies.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff", "\x00", "\x07", "\x1f"])
    | strategies.characters(categories=["L", "N"]),
    min_size=1,
    max_size=100,
).map("".join)
JSON_SCALARS = strategies.one_of(
    strategies.sampled_from([*SORT_KEYS, "asc", "desc", "1990-01-01", "2024-02-30", ""]),
    strategies.integers(min_value=-(2**33), max_value=2**33),
    strategies.floats(allow_nan=False),
    strategies.booleans(),
    strategies.none(),
    strategies.text(max_size=120),
)
JSON_VALUES = strategies.recursive(
    JSON_SCALARS,
    lambda inner: (
        strategies.lists(inner, max_size=3)
        | strategies.dictionaries(strategies.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def cursor_of(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).rstrip(b"=").decode()


@pytest.fixture
async def staff(make_employees: Any) -> list[dict[str, Any]]:
    rows = [
        employee_payload(
            emp_id=i + 1,
            emp_name=name,
            city=["Lyon", "London", "Lisbon"][i % 3],
            country=["France", "United Kingdom", "Portugal"][i % 3],
            emp_dob=f"19{70 + i % 4}-01-0{1 + i % 2}",
        )
        for i, name in enumerate(NAMES)
    ]
    await make_employees(*rows)
    return rows


def expected_order(rows: list[dict[str, Any]], sort_by: str, order: str) -> list[int]:
    ordered = sorted(rows, key=lambda row: (row[sort_by], row["emp_id"]), reverse=order == "desc")
    return [row["emp_id"] for row in ordered]


class TestCursorWalk:
    @pytest.mark.parametrize("sort_by", ["emp_id", "emp_name", "emp_dob", "city", "country"])
    @pytest.mark.parametrize("order", ["asc", "desc"])
    async def test_every_row_once_in_order_despite_ties(
        self, normal_user_client, staff, sort_by, order
    ):
        seen, pages = await walk(
            normal_user_client, f"/employees/?sort_by={sort_by}&order={order}&limit=5"
        )
        assert seen == expected_order(staff, sort_by, order)
        assert pages == 3

    async def test_filters_carry_over(self, normal_user_client, staff):
        seen, _ = await walk(normal_user_client, "/employees/?city=LON&limit=2&sort_by=emp_name")
        london = [row for row in staff if row["city"] == "London"]
        assert seen == expected_order(london, "emp_name", "asc")

    async def test_a_cursor_page_links_first_and_next_only(self, normal_user_client, staff):
        first = await normal_user_client.get("/employees/?limit=5")
        second = await normal_user_client.get(links(first)["next"])
        assert set(links(second)) == {"first", "next"}
        assert second.headers["x-total-count"] == "12"
        last = await normal_user_client.get(links(second)["next"])
        assert set(links(last)) == {"first"}
        assert emp_ids(last) == [11, 12]

    async def test_rows_added_behind_the_cursor_do_not_shift_the_walk(
        self, normal_user_client, admin_user_client, staff
    ):
        first = await normal_user_client.get("/employees/?limit=5")
        await admin_user_client.delete("/employees/1")
        second = await normal_user_client.get(links(first)["next"])
        assert emp_ids(second) == [6, 7, 8, 9, 10]

    async def test_an_exact_page_end_has_no_next(self, normal_user_client, make_employees):
        await make_employees(*(employee_payload(emp_id=i) for i in range(1, 6)))
        response = await normal_user_client.get("/employees/?limit=5")
        assert "next" not in links(response)


class TestBadCursors:
    @pytest.mark.parametrize(
        ("sort_by", "cursor"),
        [
            ("emp_id", "not base64!"),
            ("emp_id", "AAAA"),
            ("emp_id", cursor_of({"a": 1})),  # type: ignore[arg-type]
            ("emp_id", cursor_of(["emp_id", "asc", 5])),
            ("emp_id", cursor_of(["emp_id", "asc", "5", 5])),
            ("emp_id", cursor_of(["emp_id", "asc", 5, 0])),
            ("emp_id", cursor_of(["emp_id", "asc", 5, 2**31])),
            ("emp_id", cursor_of(["emp_id", "asc", True, 5])),
            ("emp_name", cursor_of(["emp_name", "asc", 5, 5])),
            ("emp_name", cursor_of(["emp_name", "asc", "x" * 101, 5])),
            ("emp_dob", cursor_of(["emp_dob", "asc", "1990-13-01", 5])),
            ("emp_id", "x" * 601),
            # Text the database cannot hold: a lone surrogate, NUL, another control character.
            *(
                (key, cursor_of([key, "asc", text, 5]))
                for key in ("city", "emp_name", "country")
                for text in ("\ud800", "a\udfffb", "a\x00b", "a\x07b")
            ),
            ("city", "WyJjaXR5IiwgImFzYyIsICJcdWQ4MDAiLCA1XQ"),  # the outside testers' cursor
        ],
    )
    async def test_forged_or_broken_cursor_is_422(self, normal_user_client, staff, sort_by, cursor):
        response = await normal_user_client.get(
            "/employees/", params={"cursor": cursor, "sort_by": sort_by}
        )
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", "cursor"]

    @hypothesis_settings(
        max_examples=100,
        derandomize=True,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        sort_by=strategies.sampled_from(SORT_KEYS),
        order=strategies.sampled_from(["asc", "desc"]),
        value=strategies.one_of(HOSTILE_TEXT, JSON_SCALARS),
        emp_id=strategies.one_of(strategies.integers(1, 2**31 - 1), JSON_SCALARS),
        other=strategies.none() | strategies.lists(JSON_VALUES, max_size=5),
    )
    async def test_no_cursor_gets_a_5xx(
        self, normal_user_client, staff, sort_by, order, value, emp_id, other
    ):
        # Mostly cursors of the requested order (they reach the database), some of any shape.
        cursor = cursor_of([sort_by, order, value, emp_id] if other is None else other)
        response = await normal_user_client.get(
            "/employees/", params={"cursor": cursor, "sort_by": sort_by, "order": order}
        )
        assert response.status_code in (200, 422), response.text
        if response.status_code == 422:
            assert response.json()["detail"][0]["loc"] == ["query", "cursor"]

    async def test_cursor_of_another_order_is_422(self, normal_user_client, staff):
        first = await normal_user_client.get("/employees/?limit=5&sort_by=city")
        cursor = links(first)["next"].split("cursor=")[1].split("&")[0]
        response = await normal_user_client.get(f"/employees/?cursor={cursor}&sort_by=emp_name")
        assert response.status_code == 422
        assert "another sort_by" in response.json()["detail"][0]["msg"]

    async def test_cursor_with_offset_is_422(self, normal_user_client, staff):
        cursor = cursor_of(["emp_id", "asc", 5, 5])
        response = await normal_user_client.get(f"/employees/?cursor={cursor}&offset=5")
        assert response.status_code == 422


class TestTotalCount:
    @pytest.fixture
    def settings(self, backend, shared_postgres_url):
        url = "sqlite+aiosqlite://" if backend == "sqlite" else shared_postgres_url
        return make_settings(url, exact_count_limit=5)

    async def test_counts_up_to_the_limit_are_exact(self, normal_user_client, staff):
        response = await normal_user_client.get("/employees/?city=lyon")
        assert response.headers["x-total-count"] == "4"
        assert "x-total-count-estimated" not in response.headers

    async def test_larger_counts_are_flagged_as_estimates_on_postgres(
        self, normal_user_client, staff, backend
    ):
        # Not the last page: that one counts itself (below).
        response = await normal_user_client.get("/employees/?city=l&limit=5")
        total = int(response.headers["x-total-count"])
        if backend == "sqlite":
            # The embedded database counts exactly: it holds small tables.
            assert total == 12
            assert "x-total-count-estimated" not in response.headers
        else:
            assert response.headers["x-total-count-estimated"] == "true"
            assert total >= 6

    async def test_the_last_page_counts_itself_without_a_count_query(
        self, normal_user_client, staff, engine
    ):
        # 12 rows, more than the limit of 5: still exact, from the page's offset and rows alone.
        with captured(engine) as statements:
            response = await normal_user_client.get("/employees/?city=l&offset=10&limit=5")
        assert emp_ids(response) == [11, 12]
        assert response.headers["x-total-count"] == "12"
        assert "x-total-count-estimated" not in response.headers
        assert not [s for s in statements if re.search(r"count\(|EXPLAIN|reltuples", s, re.I)]

    async def test_rows_added_show_in_the_last_page_total(
        self, normal_user_client, staff, make_employees
    ):
        await make_employees(*({"emp_id": n, "city": "Leeds"} for n in range(100, 104)))
        response = await normal_user_client.get("/employees/?city=l&offset=14&limit=5")
        assert emp_ids(response) == [102, 103]
        assert response.headers["x-total-count"] == "16"
        assert "x-total-count-estimated" not in response.headers

    async def test_a_last_keyset_page_still_counts_the_rows_before_it(
        self, normal_user_client, staff, backend
    ):
        first = await normal_user_client.get("/employees/?limit=10")
        response = await normal_user_client.get(links(first)["next"])
        assert emp_ids(response) == [11, 12]
        total = int(response.headers["x-total-count"])
        if backend == "sqlite":
            assert total == 12
        else:
            assert response.headers["x-total-count-estimated"] == "true"
            assert total >= 6

    async def test_past_the_end_is_counted(self, normal_user_client, staff, backend):
        response = await normal_user_client.get("/employees/?offset=40&limit=5")
        assert response.json() == []
        if backend == "sqlite":
            assert response.headers["x-total-count"] == "12"
        assert int(response.headers["x-total-count"]) >= 6
