"""The answers of writes are serialised from rows, without the response model: they must still
be exactly what `EmployeeRead` makes of the stored record, and what a read of it answers."""

from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.employees import crud
from app.employees.models import Employee, EmployeeRead
from tests.conftest import employee_payload

# Names with characters JSON escapes or encodes in several bytes, and a date and times to format.
UNUSUAL = employee_payload(
    4242, emp_name='Zoë "Q" Ñúñez \\ 李', city="Dün Laoghaire", country="Éire"
)


async def as_employee_read(
    sessionmaker: async_sessionmaker[AsyncSession], emp_id: int
) -> dict[str, Any]:
    """The stored record as the response model renders it, from an ORM instance."""
    async with sessionmaker() as session:
        statement = select(Employee).where(crud.employee_table.c.emp_id == emp_id)
        employee = (await session.execute(statement)).scalar_one()
        return EmployeeRead.model_validate(employee).model_dump(mode="json")


async def check_answer(
    answer: Response,
    client: AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    body = answer.json()
    assert answer.headers["content-type"] == "application/json"
    assert list(body) == list(EmployeeRead.model_fields)
    assert body == await as_employee_read(sessionmaker, body["emp_id"])
    read = await client.get(f"/employees/{body['emp_id']}")
    assert read.content == answer.content
    assert read.headers["ETag"] == answer.headers["ETag"]


async def test_create_answers_the_stored_record(
    admin_user_client: AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    answer = await admin_user_client.post("/employees/", json=UNUSUAL)
    assert answer.status_code == 201
    assert answer.headers["Location"] == "/employees/4242"
    await check_answer(answer, admin_user_client, sessionmaker)


async def test_idempotent_create_answers_the_stored_record(
    admin_user_client: AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    headers = {"Idempotency-Key": "response-shape"}
    first = await admin_user_client.post("/employees/", json=UNUSUAL, headers=headers)
    again = await admin_user_client.post("/employees/", json=UNUSUAL, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert again.headers["ETag"] == first.headers["ETag"]
    await check_answer(first, admin_user_client, sessionmaker)


@pytest.mark.parametrize(
    ("method", "body"),
    [
        pytest.param("PATCH", {"city": "Cork", "emp_dob": "1970-01-31"}, id="patch"),
        pytest.param("PATCH", {"city": "Dün Laoghaire"}, id="patch-unchanged"),
        pytest.param("PUT", employee_payload(4243, emp_name="Ōtsuka"), id="put-renumber"),
    ],
)
async def test_updates_answer_the_stored_record(
    admin_user_client: AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    method: str,
    body: dict[str, Any],
) -> None:
    created = await admin_user_client.post("/employees/", json=UNUSUAL)
    assert created.status_code == 201
    answer = await admin_user_client.request(method, "/employees/4242", json=body)
    assert answer.status_code == 200
    await check_answer(answer, admin_user_client, sessionmaker)
