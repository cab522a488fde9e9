"""GET /employees/ and GET /employees/{emp_id}: any signed-in user; pages, filters, sorting."""

import re
from datetime import date
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select

from app.employees.models import Employee, EmployeeRead
from tests.conftest import employee_payload


# Plain ASCII with distinct capitals: the expected orders hold under any server collation.
def person(emp_id: int, name: str, city: str, country: str, dob: str) -> dict[str, Any]:
    return {"emp_id": emp_id, "emp_name": name, "city": city, "country": country, "emp_dob": dob}


PEOPLE = [
    person(1, "Eve", "Paris", "France", "1990-01-01"),
    person(2, "Bob", "Berlin", "Germany", "1970-05-05"),
    person(3, "Alice", "Nice", "France", "1990-01-01"),
    person(4, "Bob", "Lyon", "France", "2001-12-31"),
    person(5, "Zoe", "Zurich", "Switzerland", "1955-07-20"),
]
PLACES = [
    {"emp_id": 1, "city": "Paris", "country": "France"},
    {"emp_id": 2, "city": "paris", "country": "France"},
    {"emp_id": 3, "city": "Lyon", "country": "France"},
    {"emp_id": 4, "city": "Zürich", "country": "Switzerland"},
    {"emp_id": 5, "city": "Comparison", "country": "Germany"},
]


def links(response: Any) -> dict[str, str]:
    header = response.headers.get("link", "")
    return {rel: url for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', header)}


def emp_ids(response: Any) -> list[int]:
    return [row["emp_id"] for row in response.json()]


class TestReadEmployee:
    async def test_regular_user_reads_one(self, normal_user_client, make_employees):
        await make_employees(employee_payload(emp_id=42))
        response = await normal_user_client.get("/employees/42")
        assert response.status_code == 200
        body = response.json()
        assert {k: body[k] for k in employee_payload()} == employee_payload(emp_id=42)
        assert set(body) == set(employee_payload()) | {"id", "created_at", "updated_at", "version"}
        assert body["created_at"].endswith("Z") or body["created_at"].endswith("+00:00")

    async def test_unknown_emp_id_gets_404(self, normal_user_client):
        response = await normal_user_client.get("/employees/999")
        assert response.status_code == 404
        assert response.json() == {"detail": "Employee 999 not found"}

    async def test_anonymous_gets_401(self, client, make_employees):
        await make_employees(employee_payload(emp_id=42))
        response = await client.get("/employees/42")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"

    @pytest.mark.parametrize(
        "emp_id", ["0", "-1", "2147483648", "99999999999999999999", "abc", "1.5"]
    )
    async def test_invalid_path_value_gets_422(self, normal_user_client, emp_id):
        response = await normal_user_client.get(f"/employees/{emp_id}")
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["path", "emp_id"]

    async def test_largest_emp_id_is_a_plain_404(self, normal_user_client):
        response = await normal_user_client.get("/employees/2147483647")
        assert response.status_code == 404


class TestListEmployees:
    async def test_anonymous_gets_401(self, client):
        response = await client.get("/employees/")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"

    @pytest.mark.parametrize("path", ["/employees", "/employees/"])
    async def test_both_paths_answer_without_redirect(
        self, normal_user_client, make_employees, path
    ):
        await make_employees(*PEOPLE)
        response = await normal_user_client.get(path)
        assert response.status_code == 200
        assert emp_ids(response) == [1, 2, 3, 4, 5]
        assert response.headers["x-total-count"] == "5"

    async def test_empty_table_gives_empty_array(self, normal_user_client):
        response = await normal_user_client.get("/employees/")
        assert response.status_code == 200
        assert response.json() == []
        assert response.headers["x-total-count"] == "0"
        assert set(links(response)) == {"first"}

    async def test_default_page_is_100_rows(self, normal_user_client, make_employees):
        await make_employees(*(employee_payload(emp_id=i) for i in range(1, 131)))
        response = await normal_user_client.get("/employees/")
        assert emp_ids(response) == list(range(1, 101))
        assert response.headers["x-total-count"] == "130"

    @pytest.mark.parametrize(
        "query", ["limit=0", "limit=101", "limit=-1", "offset=-1", "offset=2147483648", "limit=x"]
    )
    async def test_page_bounds_are_422(self, normal_user_client, query):
        response = await normal_user_client.get(f"/employees/?{query}")
        assert response.status_code == 422


class TestPagination:
    async def test_pages_cover_every_row_once(self, normal_user_client, make_employees):
        await make_employees(*(employee_payload(emp_id=i) for i in range(1, 24)))
        seen: list[int] = []
        url = "/employees/?limit=5"
        pages = 0
        while url:
            response = await normal_user_client.get(url)
            assert response.status_code == 200
            assert response.headers["x-total-count"] == "23"
            seen += emp_ids(response)
            url = links(response).get("next", "")
            pages += 1
        assert seen == list(range(1, 24))
        assert pages == 5

    async def test_links_of_a_middle_page(self, normal_user_client, make_employees):
        await make_employees(*(employee_payload(emp_id=i) for i in range(1, 24)))
        response = await normal_user_client.get("/employees/?offset=10&limit=5&city=lon")
        rels = links(response)
        assert emp_ids(response) == [11, 12, 13, 14, 15]
        assert "cursor=" in rels["next"] and "offset" not in rels["next"]
        assert "offset=5" in rels["prev"]
        assert "offset=0" in rels["first"]
        # Filters and page size carry over into every link.
        assert all("city=lon" in url and "limit=5" in url for url in rels.values())
        following = await normal_user_client.get(rels["next"])
        assert emp_ids(following) == [16, 17, 18, 19, 20]

    async def test_last_page_has_no_next(self, normal_user_client, make_employees):
        await make_employees(*(employee_payload(emp_id=i) for i in range(1, 11)))
        response = await normal_user_client.get("/employees/?offset=5&limit=5")
        assert emp_ids(response) == [6, 7, 8, 9, 10]
        assert set(links(response)) == {"first", "prev"}

    async def test_first_page_has_no_prev(self, normal_user_client, make_employees):
        await make_employees(*(employee_payload(emp_id=i) for i in range(1, 11)))
        response = await normal_user_client.get("/employees/?limit=5")
        assert set(links(response)) == {"first", "next"}

    async def test_offset_past_the_end_is_empty_and_points_back(
        self, normal_user_client, make_employees
    ):
        await make_employees(*(employee_payload(emp_id=i) for i in range(1, 11)))
        response = await normal_user_client.get("/employees/?offset=50&limit=5")
        assert response.status_code == 200
        assert response.json() == []
        assert response.headers["x-total-count"] == "10"
        assert "offset=5" in links(response)["prev"]


class TestListBody:
    async def test_rows_are_exactly_what_employee_read_gives(
        self, normal_user_client, make_employees, session
    ):
        await make_employees(
            *PEOPLE, person(6, "Zoë O'Brien", "Zürich", "Österreich", "1900-01-01")
        )
        response = await normal_user_client.get(
            "/employees/", params={"sort_by": "emp_name", "order": "desc", "offset": 1}
        )
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        stored = sorted(
            await session.scalars(select(Employee)), key=lambda e: (e.emp_name, e.emp_id)
        )
        expected = [EmployeeRead.model_validate(e).model_dump(mode="json") for e in stored]
        expected = expected[::-1][1:]
        body = response.json()
        assert body == expected
        # The same fields in the same order as the response model.
        assert [list(row) for row in body] == [list(EmployeeRead.model_fields)] * 5


class TestSorting:
    @pytest.mark.parametrize(
        ("sort_by", "order", "expected"),
        [
            ("emp_id", "asc", [1, 2, 3, 4, 5]),
            ("emp_id", "desc", [5, 4, 3, 2, 1]),
            # Ties ("Bob" twice, two birthdays 1990-01-01) are broken by emp_id.
            ("emp_name", "asc", [3, 2, 4, 1, 5]),
            ("emp_name", "desc", [5, 1, 4, 2, 3]),
            ("emp_dob", "asc", [5, 2, 1, 3, 4]),
            ("emp_dob", "desc", [4, 3, 1, 2, 5]),
            ("city", "asc", [2, 4, 3, 1, 5]),
            ("city", "desc", [5, 1, 3, 4, 2]),
            ("country", "asc", [1, 3, 4, 2, 5]),
            ("country", "desc", [5, 2, 4, 3, 1]),
        ],
    )
    async def test_each_key_both_ways(
        self, normal_user_client, make_employees, sort_by, order, expected
    ):
        await make_employees(*PEOPLE)
        response = await normal_user_client.get(f"/employees/?sort_by={sort_by}&order={order}")
        assert response.status_code == 200
        assert emp_ids(response) == expected

    async def test_ties_never_repeat_or_skip_across_pages(self, normal_user_client, make_employees):
        await make_employees(
            *(employee_payload(emp_id=i, emp_name="Same") for i in range(30, 0, -1))
        )
        seen: list[int] = []
        for offset in range(0, 30, 7):
            response = await normal_user_client.get(
                f"/employees/?sort_by=emp_name&order=desc&limit=7&offset={offset}"
            )
            seen += emp_ids(response)
        assert seen == list(range(30, 0, -1))

    @pytest.mark.parametrize("query", ["sort_by=salary", "sort_by=id", "order=up", "sort_by="])
    async def test_unknown_sort_is_422(self, normal_user_client, query):
        response = await normal_user_client.get(f"/employees/?{query}")
        assert response.status_code == 422


class TestFiltering:
    async def test_city_is_case_insensitive_substring(self, normal_user_client, make_employees):
        await make_employees(*PLACES)
        response = await normal_user_client.get("/employees/?city=PAR")
        assert emp_ids(response) == [1, 2, 5]
        assert response.headers["x-total-count"] == "3"

    async def test_non_ascii_case_folding(self, normal_user_client, make_employees):
        await make_employees(*PLACES)
        response = await normal_user_client.get("/employees/", params={"city": "ZÜR"})
        assert emp_ids(response) == [4]

    async def test_city_and_country_combine(self, normal_user_client, make_employees):
        await make_employees(*PLACES)
        response = await normal_user_client.get("/employees/?country=GER&city=par")
        assert emp_ids(response) == [5]

    async def test_filter_and_sort_and_page_together(self, normal_user_client, make_employees):
        await make_employees(*PEOPLE)
        response = await normal_user_client.get(
            "/employees/?country=france&sort_by=emp_name&order=desc&limit=2"
        )
        assert emp_ids(response) == [1, 4]
        assert response.headers["x-total-count"] == "3"
        assert "next" in links(response)

    @pytest.mark.parametrize(("term", "expected"), [("%", [2]), ("_", [3]), ("\\", [4])])
    async def test_wildcards_match_literally(
        self, normal_user_client, make_employees, term, expected
    ):
        await make_employees(
            employee_payload(emp_id=1, city="Springfield"),
            employee_payload(emp_id=2, city="100% City"),
            employee_payload(emp_id=3, city="Under_score"),
            employee_payload(emp_id=4, city="Back\\slash"),
        )
        response = await normal_user_client.get("/employees/", params={"city": term})
        assert response.status_code == 200
        assert emp_ids(response) == expected

    async def test_no_match_is_empty(self, normal_user_client, make_employees):
        await make_employees(*PLACES)
        response = await normal_user_client.get("/employees/?city=tokyo")
        assert response.json() == []
        assert response.headers["x-total-count"] == "0"

    @pytest.mark.parametrize("term", ["", "   ", "a" * 101, "bad\x00city", "tab\tcity"])
    async def test_invalid_filter_is_422(self, normal_user_client, term):
        response = await normal_user_client.get("/employees/", params={"city": term})
        assert response.status_code == 422


async def test_read_only_user_sees_dates_as_iso(normal_user_client: AsyncClient, make_employees):
    await make_employees(employee_payload(emp_id=7, emp_dob="1900-01-01"))
    response = await normal_user_client.get("/employees/7")
    assert date.fromisoformat(response.json()["emp_dob"]) == date(1900, 1, 1)
