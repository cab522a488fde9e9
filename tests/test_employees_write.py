"""POST, PUT, PATCH and DELETE on /employees: admins only, validated, never half-written."""

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.employees.models import Employee
from tests.conftest import employee_payload


async def stored(sessionmaker: async_sessionmaker[AsyncSession]) -> list[dict[str, Any]]:
    """What the database holds, read with a fresh session."""
    async with sessionmaker() as session:
        rows = (await session.execute(select(Employee).order_by(Employee.emp_id))).scalars()
        return [
            row.model_dump(exclude={"id", "created_at", "updated_at", "version"}) for row in rows
        ]


def ascii_json(body: dict[str, Any]) -> dict[str, Any]:
    # json.dumps escapes a lone surrogate as \ud800, which is how a hostile client sends one.
    return {"content": json.dumps(body), "headers": {"Content-Type": "application/json"}}


def as_stored(payload: dict[str, Any]) -> dict[str, Any]:
    return payload | {"emp_dob": date.fromisoformat(payload["emp_dob"])}


TOMORROW = (datetime.now(UTC).date() + timedelta(days=2)).isoformat()

INVALID_BODIES = [
    pytest.param({"emp_dob": "1985-13-01"}, id="bad-date"),
    pytest.param({"emp_dob": "not a date"}, id="garbage-date"),
    pytest.param({"emp_dob": TOMORROW}, id="future-birth"),
    pytest.param({"emp_dob": "1899-12-31"}, id="before-1900"),
    pytest.param({"emp_id": 0}, id="emp-id-zero"),
    pytest.param({"emp_id": -5}, id="emp-id-negative"),
    pytest.param({"emp_id": 2147483648}, id="emp-id-over-int32"),
    pytest.param({"emp_id": 10**30}, id="emp-id-huge"),
    pytest.param({"emp_id": "twelve"}, id="emp-id-text"),
    pytest.param({"emp_id": 1.5}, id="emp-id-fraction"),
    pytest.param({"emp_name": "x" * 101}, id="name-too-long"),
    pytest.param({"emp_name": ""}, id="name-empty"),
    pytest.param({"emp_name": "   "}, id="name-blank"),
    pytest.param({"emp_name": "Ada\x00Lovelace"}, id="name-nul"),
    pytest.param({"city": "Lon\x1bdon"}, id="city-escape"),
    pytest.param({"country": "\ud800"}, id="country-lone-surrogate"),
    pytest.param({"emp_name": None}, id="name-null"),
    pytest.param({"emp_name": 12}, id="name-number"),
    pytest.param({"is_admin": True}, id="unknown-field"),
    pytest.param({"id": "7d0f4c1e-4b0a-4a53-9a55-1f1ad6f6f1b1"}, id="client-chosen-id"),
]


class TestCreateEmployee:
    @pytest.mark.parametrize("path", ["/employees/", "/employees"])
    async def test_admin_creates(self, admin_user_client, sessionmaker, path):
        response = await admin_user_client.post(path, json=employee_payload())
        assert response.status_code == 201
        body = response.json()
        assert {k: body[k] for k in employee_payload()} == employee_payload()
        assert response.headers["location"] == "/employees/1001"
        assert body["created_at"] == body["updated_at"]
        assert await stored(sessionmaker) == [as_stored(employee_payload())]

    async def test_fields_are_trimmed(self, admin_user_client, sessionmaker):
        payload = employee_payload(emp_name="  Ada  ", city=" London", country="UK ")
        response = await admin_user_client.post("/employees/", json=payload)
        assert response.status_code == 201
        assert (response.json()["emp_name"], response.json()["city"]) == ("Ada", "London")
        assert (await stored(sessionmaker))[0]["country"] == "UK"

    async def test_boundary_values_are_accepted(self, admin_user_client):
        today = datetime.now(UTC).date().isoformat()
        payload = employee_payload(
            emp_id=2147483647, emp_name="é" * 100, city="c", country="Ünïcode 国", emp_dob=today
        )
        response = await admin_user_client.post("/employees/", json=payload)
        assert response.status_code == 201
        assert response.json()["emp_name"] == "é" * 100

    async def test_regular_user_gets_403(self, normal_user_client, sessionmaker):
        response = await normal_user_client.post("/employees/", json=employee_payload())
        assert response.status_code == 403
        assert response.json() == {"detail": "Administrator privileges are required"}
        assert await stored(sessionmaker) == []

    async def test_anonymous_gets_401(self, client, sessionmaker):
        response = await client.post("/employees/", json=employee_payload())
        assert response.status_code == 401
        assert await stored(sessionmaker) == []

    async def test_duplicate_emp_id_gets_409(self, admin_user_client, sessionmaker):
        first = await admin_user_client.post("/employees/", json=employee_payload())
        assert first.status_code == 201
        response = await admin_user_client.post(
            "/employees/", json=employee_payload(emp_name="Someone Else")
        )
        assert response.status_code == 409
        assert response.json() == {"detail": "An employee with emp_id 1001 already exists"}
        assert await stored(sessionmaker) == [as_stored(employee_payload())]

    @pytest.mark.parametrize("change", INVALID_BODIES)
    async def test_invalid_body_gets_422(self, admin_user_client, sessionmaker, change):
        response = await admin_user_client.post(
            "/employees/", **ascii_json(employee_payload() | change)
        )
        assert response.status_code == 422
        assert isinstance(response.json()["detail"], list)
        assert await stored(sessionmaker) == []

    @pytest.mark.parametrize("field", ["emp_id", "emp_name", "city", "country", "emp_dob"])
    async def test_missing_field_gets_422(self, admin_user_client, field):
        payload = employee_payload()
        del payload[field]
        response = await admin_user_client.post("/employees/", json=payload)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", field]

    async def test_malformed_json_gets_422(self, admin_user_client, sessionmaker):
        response = await admin_user_client.post(
            "/employees/", content=b'{"emp_id": 1,', headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422
        assert await stored(sessionmaker) == []

    async def test_validation_errors_do_not_echo_input(self, admin_user_client):
        response = await admin_user_client.post(
            "/employees/", json=employee_payload(emp_name="s3cr3t-value" * 20)
        )
        assert response.status_code == 422
        assert "s3cr3t-value" not in response.text


class TestReplaceEmployee:
    async def test_admin_replaces_every_field(
        self, admin_user_client, make_employees, sessionmaker
    ):
        (before,) = await make_employees(employee_payload(emp_id=7))
        new = employee_payload(
            emp_id=7, emp_name="Grace Hopper", city="Arlington", country="USA", emp_dob="1906-12-09"
        )
        response = await admin_user_client.put("/employees/7", json=new)
        assert response.status_code == 200
        body = response.json()
        assert {k: body[k] for k in new} == new
        assert body["id"] == str(before.id)
        assert body["updated_at"] > body["created_at"]
        assert await stored(sessionmaker) == [as_stored(new)]

    async def test_partial_body_gets_422(self, admin_user_client, make_employees, sessionmaker):
        await make_employees(employee_payload(emp_id=7))
        response = await admin_user_client.put("/employees/7", json={"city": "Paris"})
        assert response.status_code == 422
        assert await stored(sessionmaker) == [as_stored(employee_payload(emp_id=7))]

    async def test_may_move_to_a_free_emp_id(self, admin_user_client, make_employees, sessionmaker):
        await make_employees(employee_payload(emp_id=7))
        response = await admin_user_client.put("/employees/7", json=employee_payload(emp_id=8))
        assert response.status_code == 200
        assert (await admin_user_client.get("/employees/7")).status_code == 404
        assert [row["emp_id"] for row in await stored(sessionmaker)] == [8]

    async def test_taken_emp_id_gets_409(self, admin_user_client, make_employees, sessionmaker):
        await make_employees(employee_payload(emp_id=7), employee_payload(emp_id=8, city="Oslo"))
        response = await admin_user_client.put(
            "/employees/7", json=employee_payload(emp_id=8, city="Rome")
        )
        assert response.status_code == 409
        assert await stored(sessionmaker) == [
            as_stored(employee_payload(emp_id=7)),
            as_stored(employee_payload(emp_id=8, city="Oslo")),
        ]

    async def test_unknown_emp_id_gets_404(self, admin_user_client):
        response = await admin_user_client.put("/employees/9", json=employee_payload(emp_id=9))
        assert response.status_code == 404

    async def test_regular_user_gets_403(self, normal_user_client, make_employees, sessionmaker):
        await make_employees(employee_payload(emp_id=7))
        response = await normal_user_client.put(
            "/employees/7", json=employee_payload(emp_id=7, city="Rome")
        )
        assert response.status_code == 403
        assert await stored(sessionmaker) == [as_stored(employee_payload(emp_id=7))]

    async def test_anonymous_gets_401(self, client):
        response = await client.put("/employees/7", json=employee_payload(emp_id=7))
        assert response.status_code == 401


class TestUpdateEmployee:
    async def test_only_sent_fields_change(self, admin_user_client, make_employees, sessionmaker):
        await make_employees(employee_payload(emp_id=7))
        response = await admin_user_client.patch("/employees/7", json={"city": "Paris"})
        assert response.status_code == 200
        assert response.json()["city"] == "Paris"
        assert await stored(sessionmaker) == [as_stored(employee_payload(emp_id=7, city="Paris"))]

    async def test_empty_patch_changes_nothing(self, admin_user_client, make_employees):
        (before,) = await make_employees(employee_payload(emp_id=7))
        response = await admin_user_client.patch("/employees/7", json={})
        assert response.status_code == 200
        assert response.json()["updated_at"] == before.updated_at.isoformat().replace("+00:00", "Z")

    @pytest.mark.parametrize("field", ["emp_id", "emp_name", "city", "country", "emp_dob"])
    async def test_null_for_a_required_field_gets_422(
        self, admin_user_client, make_employees, sessionmaker, field
    ):
        await make_employees(employee_payload(emp_id=7))
        response = await admin_user_client.patch("/employees/7", json={field: None})
        assert response.status_code == 422
        assert await stored(sessionmaker) == [as_stored(employee_payload(emp_id=7))]

    @pytest.mark.parametrize("change", INVALID_BODIES)
    async def test_invalid_value_gets_422(
        self, admin_user_client, make_employees, sessionmaker, change
    ):
        await make_employees(employee_payload(emp_id=7))
        response = await admin_user_client.patch("/employees/7", **ascii_json(change))
        assert response.status_code == 422
        assert await stored(sessionmaker) == [as_stored(employee_payload(emp_id=7))]

    async def test_taken_emp_id_gets_409(self, admin_user_client, make_employees, sessionmaker):
        await make_employees(employee_payload(emp_id=7), employee_payload(emp_id=8))
        response = await admin_user_client.patch("/employees/7", json={"emp_id": 8, "city": "X"})
        assert response.status_code == 409
        assert [row["city"] for row in await stored(sessionmaker)] == ["London", "London"]

    async def test_unknown_emp_id_gets_404(self, admin_user_client):
        response = await admin_user_client.patch("/employees/9", json={"city": "Paris"})
        assert response.status_code == 404

    async def test_regular_user_gets_403_even_for_unknown_ids(self, normal_user_client):
        response = await normal_user_client.patch("/employees/9", json={"city": "Paris"})
        assert response.status_code == 403

    async def test_anonymous_gets_401(self, client, make_employees):
        await make_employees(employee_payload(emp_id=7))
        response = await client.patch("/employees/7", json={"city": "Paris"})
        assert response.status_code == 401


class TestDeleteEmployee:
    async def test_admin_deletes(self, admin_user_client, make_employees, sessionmaker):
        await make_employees(employee_payload(emp_id=7), employee_payload(emp_id=8))
        response = await admin_user_client.delete("/employees/7")
        assert response.status_code == 204
        assert response.content == b""
        assert [row["emp_id"] for row in await stored(sessionmaker)] == [8]
        assert (await admin_user_client.delete("/employees/7")).status_code == 404

    async def test_unknown_emp_id_gets_404(self, admin_user_client):
        response = await admin_user_client.delete("/employees/9")
        assert response.status_code == 404
        assert response.json() == {"detail": "Employee 9 not found"}

    async def test_regular_user_gets_403(self, normal_user_client, make_employees, sessionmaker):
        await make_employees(employee_payload(emp_id=7))
        response = await normal_user_client.delete("/employees/7")
        assert response.status_code == 403
        assert len(await stored(sessionmaker)) == 1

    async def test_anonymous_gets_401(self, client, make_employees, sessionmaker):
        await make_employees(employee_payload(emp_id=7))
        response = await client.delete("/employees/7")
        assert response.status_code == 401
        assert len(await stored(sessionmaker)) == 1

    async def test_out_of_range_path_gets_422(self, admin_user_client):
        response = await admin_user_client.delete("/employees/2147483648")
        assert response.status_code == 422


@pytest.mark.postgres_only
class TestRaces:
    async def test_concurrent_duplicate_creates_yield_one_201(
        self, admin_user_client, sessionmaker
    ):
        responses = await asyncio.gather(
            *(
                admin_user_client.post("/employees/", json=employee_payload(emp_name=f"N{i}"))
                for i in range(20)
            )
        )
        codes = sorted(response.status_code for response in responses)
        assert codes == [201] + [409] * 19
        async with sessionmaker() as session:
            count = (await session.execute(select(func.count()).select_from(Employee))).scalar()
        assert count == 1

    async def test_concurrent_moves_to_one_emp_id_yield_one_winner(
        self, admin_user_client, make_employees, sessionmaker
    ):
        await make_employees(*(employee_payload(emp_id=i) for i in range(1, 11)))
        responses = await asyncio.gather(
            *(
                admin_user_client.patch(f"/employees/{i}", json={"emp_id": 500})
                for i in range(1, 11)
            )
        )
        assert sorted(r.status_code for r in responses) == [200] + [409] * 9
        assert len(await stored(sessionmaker)) == 10
