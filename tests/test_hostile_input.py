"""Hostile input: every answer is a 4xx (422 where validation decides), never a 500.

Complements tests/test_employees_*.py and tests/test_auth.py, which cover the common cases.
Each test sweeps its variants in a loop: every parametrized case costs a fresh PostgreSQL
database, and these requests are refused before the database is reached anyway.
"""

import json
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts.models import User
from app.employees.models import Employee
from tests.conftest import USER_PASSWORD, employee_payload

JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
# Escaped in JSON text the way a hostile client sends them (httpx cannot encode a lone surrogate).
BAD_CHARACTERS = [
    "\\u0000",  # NUL
    "\\ud800",  # lone high surrogate
    "\\udfff",  # lone low surrogate
    "\\u001b",  # escape
    "\\n",
    "\\u007f",  # delete
    "\\u0085",  # C1 "next line"
]
FORM_BAD_CHARACTERS = ["\x00", "\x1b", "\x7f", "\x85", "\r\n"]
MASS_ASSIGNMENT = {
    "id": "7d0f4c1e-4b0a-4a53-9a55-1f1ad6f6f1b1",
    "is_admin": True,
    "is_active": False,
    "hashed_password": "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA",
    "token_version": 99,
    "created_at": "2000-01-01T00:00:00Z",
    "updated_at": "2000-01-01T00:00:00Z",
}
HUGE_NUMBERS = ["99999999999999999999", "1" + "0" * 5000, "-" + "9" * 30]
WRITES = [
    pytest.param("POST", "/employees/", id="create"),
    pytest.param("PUT", "/employees/7", id="replace"),
    pytest.param("PATCH", "/employees/7", id="update"),
]
BODY_TARGETS = [*WRITES, pytest.param("POST", "/auth/register", id="register")]
NOT_AN_OBJECT = [b"[]", b'[{"emp_id": 1}]', b'"a string"', b"42", b"null", b"true"]
INVALID_UTF8 = [
    b'{"emp_name": "\xff\xfe"}',
    b'{"emp_name": "\xed\xa0\x80"}',  # a surrogate encoded as if it were a character
    b"\xc3\x28",
]


async def rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[dict[str, Any]]:
    async with sessionmaker() as session:
        result = await session.execute(select(Employee).order_by(Employee.emp_id))
        return [row.model_dump() for row in result.scalars()]


async def user_count(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return (await session.execute(select(func.count()).select_from(User))).scalar_one()


def assert_client_error(response: Any, case: object) -> None:
    assert 400 <= response.status_code < 500, (case, response.status_code, response.text[:200])


@pytest.fixture
async def seeded(make_employees, sessionmaker) -> list[dict[str, Any]]:
    """Employee 7 exists; the test then checks it is unchanged."""
    await make_employees(employee_payload(emp_id=7))
    return await rows(sessionmaker)


class TestLoginForm:
    @pytest.mark.parametrize("field", ["username", "password"])
    async def test_control_characters_get_422(self, client, normal_user, field):
        for bad in FORM_BAD_CHARACTERS:
            form = {"username": "jane.doe", "password": USER_PASSWORD}
            form[field] = form[field][:3] + bad + form[field][3:]
            response = await client.post("/auth/token", data=form)
            assert response.status_code == 422, repr(bad)
            assert [item["loc"] for item in response.json()["detail"]] == [["body", field]]
            assert "access_token" not in response.text

    async def test_garbled_form_is_a_client_error(self, client, normal_user):
        bodies = [
            b"username=%ED%A0%80&password=%ff%fe",  # invalid UTF-8 once decoded
            b"username=%zz&password=%",  # invalid percent-encoding
            b"username=jane.doe&password=%E0%A4%A",
            b"\xff\xfe\x00\x01",
            b"&&&===&",
        ]
        for body in bodies:
            response = await client.post("/auth/token", content=body, headers=FORM)
            assert response.status_code in (401, 422), body
            assert "access_token" not in response.text


class TestRegister:
    async def test_bad_character_in_username_gets_422(self, client, sessionmaker):
        for bad in BAD_CHARACTERS:
            content = f'{{"username": "new{bad}user", "password": "a-brand-new-password"}}'
            response = await client.post("/auth/register", content=content, headers=JSON)
            assert response.status_code == 422, bad
            assert [item["loc"] for item in response.json()["detail"]] == [["body", "username"]]
        assert await user_count(sessionmaker) == 0

    async def test_a_refused_password_says_why_in_the_policy_s_words(self, client):
        body = {"username": "new.user", "password": "New.User"}
        response = await client.post("/auth/register", json=body)
        assert response.status_code == 422
        assert [item["msg"] for item in response.json()["detail"]] == [
            "must not be the same as the username"
        ]

    async def test_server_owned_fields_get_422(self, client, sessionmaker):
        body = {"username": "sneaky", "password": "a-brand-new-password"}
        for field, value in MASS_ASSIGNMENT.items():
            response = await client.post("/auth/register", json=body | {field: value})
            assert response.status_code == 422, field
            assert [item["type"] for item in response.json()["detail"]] == ["extra_forbidden"]
        assert await user_count(sessionmaker) == 0


class TestEmployeeBody:
    @pytest.mark.parametrize("field", ["emp_name", "city", "country", "emp_dob"])
    async def test_bad_character_in_any_text_field_gets_422(
        self, admin_user_client, sessionmaker, field
    ):
        payload = employee_payload()
        for bad in BAD_CHARACTERS:
            text = json.dumps(payload).replace(f'"{payload[field]}"', f'"{payload[field]}{bad}x"')
            response = await admin_user_client.post("/employees/", content=text, headers=JSON)
            assert response.status_code == 422, bad
            assert [item["loc"] for item in response.json()["detail"]] == [["body", field]]
        assert await rows(sessionmaker) == []

    async def test_messages_are_worded_as_the_csv_import_words_them(self, admin_user_client):
        # pydantic says "Value error, must not ..."; the CSV import's rows say "must not ...".
        body = employee_payload(emp_name="Ada\x1bLovelace", emp_dob="2999-01-01")
        response = await admin_user_client.post("/employees/", json=body)
        assert response.status_code == 422
        assert [(item["loc"], item["msg"]) for item in response.json()["detail"]] == [
            (["body", "emp_name"], "must not contain control characters"),
            (["body", "emp_dob"], "must not be in the future"),
        ]

    @pytest.mark.parametrize(("method", "path"), WRITES)
    async def test_server_owned_fields_get_422(
        self, admin_user_client, sessionmaker, seeded, method, path
    ):
        for field, value in MASS_ASSIGNMENT.items():
            body = employee_payload(emp_id=8) | {field: value}
            response = await admin_user_client.request(method, path, json=body)
            assert response.status_code == 422, field
            assert [item["type"] for item in response.json()["detail"]] == ["extra_forbidden"]
        assert await rows(sessionmaker) == seeded

    @pytest.mark.parametrize(("method", "path"), WRITES)
    async def test_unbounded_emp_id_is_refused(
        self, admin_user_client, sessionmaker, seeded, method, path
    ):
        for number in [*HUGE_NUMBERS, "1e400", "1e10", "NaN", "-Infinity"]:
            text = json.dumps(employee_payload(emp_id=8))
            text = text.replace('"emp_id": 8', f'"emp_id": {number}')
            response = await admin_user_client.request(method, path, content=text, headers=JSON)
            assert_client_error(response, number[:20])
            if len(number) < 100:  # longer ones are refused by the JSON decoder itself (400)
                assert response.status_code == 422, number
        assert await rows(sessionmaker) == seeded


class TestBodyShape:
    @pytest.mark.parametrize(("method", "path"), BODY_TARGETS)
    async def test_malformed_bodies_are_client_errors(
        self, admin_user_client, sessionmaker, seeded, method, path
    ):
        nested = [
            "[" * 10_000 + "1" + "]" * 10_000,
            '{"a":' * 10_000 + "1" + "}" * 10_000,
        ]
        for body in [*INVALID_UTF8, *nested]:
            response = await admin_user_client.request(method, path, content=body, headers=JSON)
            assert_client_error(response, body[:20])
        assert await rows(sessionmaker) == seeded
        assert await user_count(sessionmaker) == 1

    @pytest.mark.parametrize(("method", "path"), BODY_TARGETS)
    async def test_body_that_is_not_an_object_gets_422(
        self, admin_user_client, sessionmaker, seeded, method, path
    ):
        bodies = [(body, "application/json") for body in NOT_AN_OBJECT] + [
            (b"", "application/json"),
            (b"emp_id=1&username=x", "application/x-www-form-urlencoded"),
            (b"emp_id=1", "text/plain"),
        ]
        for body, content_type in bodies:
            response = await admin_user_client.request(
                method, path, content=body, headers={"Content-Type": content_type}
            )
            assert response.status_code == 422, (body, content_type)
        assert await rows(sessionmaker) == seeded
        assert await user_count(sessionmaker) == 1


class TestQueryAndPath:
    @pytest.mark.parametrize("name", ["city", "country"])
    async def test_control_characters_in_filters_get_422(self, normal_user_client, name):
        for raw in ["a%00b", "%00", "a%1Bb", "a%7Fb", "a%C2%85b", "a%0Ab"]:
            response = await normal_user_client.get(f"/employees/?{name}={raw}")
            assert response.status_code == 422, raw
            assert response.json()["detail"][0]["loc"] == ["query", name]

    async def test_50000_character_values_get_422(self, normal_user_client):
        for name in ["city", "country", "sort_by", "order", "offset", "limit"]:
            response = await normal_user_client.get("/employees/", params={name: "9" * 50_000})
            assert response.status_code == 422, name
            assert "9" * 200 not in response.text

    @pytest.mark.parametrize("name", ["offset", "limit"])
    async def test_huge_page_numbers_get_422(self, normal_user_client, name):
        for number in HUGE_NUMBERS:
            response = await normal_user_client.get(f"/employees/?{name}={number}")
            assert response.status_code == 422, number[:20]
            assert response.json()["detail"][0]["loc"] == ["query", name]

    @pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
    async def test_huge_path_emp_id_gets_422(self, admin_user_client, sessionmaker, seeded, method):
        for path in [*HUGE_NUMBERS, "%00", "1%00", "%ff", "1e3"]:
            response = await admin_user_client.request(method, f"/employees/{path}")
            assert response.status_code == 422, path[:20]
            assert response.json()["detail"][0]["loc"] == ["path", "emp_id"]
        assert await rows(sessionmaker) == seeded

    async def test_garbled_query_is_never_a_server_error(self, normal_user_client):
        for query in ["city=%ff%fe", "country=%ED%A0%80", "city=%", "city=%zz", "%00=1", "a=%00"]:
            response = await normal_user_client.get(f"/employees/?{query}")
            # Undecodable bytes become U+FFFD, an ordinary (unmatched) search term.
            assert response.status_code in (200, 422), query
            if response.status_code == 200:
                assert response.json() == []
