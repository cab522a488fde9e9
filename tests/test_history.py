"""The audit trail: every write records who, when, which request and what changed."""

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from app.employees.history.models import EmployeeAudit
from tests.conftest import employee_payload

HISTORY = "/employees/1001/history"


async def audit_rows(sessionmaker: Any) -> list[EmployeeAudit]:
    async with sessionmaker() as session:
        statement = select(EmployeeAudit).order_by(EmployeeAudit.id)  # type: ignore[arg-type]
        return list((await session.execute(statement)).scalars())


class TestAuditRows:
    async def test_create_update_delete_are_recorded_with_actor_and_request_id(
        self, admin_user_client, admin_user, sessionmaker
    ):
        ids = {"X-Request-ID": "req-create-1"}
        await admin_user_client.post("/employees/", json=employee_payload(), headers=ids)
        await admin_user_client.patch(
            "/employees/1001",
            json={"city": "Paris", "country": "France"},
            headers={"X-Request-ID": "req-update-2"},
        )
        await admin_user_client.delete("/employees/1001", headers={"X-Request-ID": "req-del-3"})
        create, change, deletion = await audit_rows(sessionmaker)
        assert [row.action for row in (create, change, deletion)] == ["create", "update", "delete"]
        assert [row.version for row in (create, change, deletion)] == [1, 2, 3]
        assert {row.actor_id for row in (create, change, deletion)} == {admin_user.id}
        assert {row.actor_username for row in (create, change, deletion)} == {"root.admin"}
        assert [row.request_id for row in (create, change, deletion)] == [
            "req-create-1",
            "req-update-2",
            "req-del-3",
        ]
        assert create.changes["emp_name"] == {"before": None, "after": "Ada Lovelace"}
        assert create.changes["emp_dob"] == {"before": None, "after": "1985-12-10"}
        assert change.changes == {
            "city": {"before": "London", "after": "Paris"},
            "country": {"before": "United Kingdom", "after": "France"},
        }
        assert deletion.changes["city"] == {"before": "Paris", "after": None}
        assert len(deletion.changes) == 5

    async def test_generated_request_id_is_the_one_returned(self, admin_user_client, sessionmaker):
        response = await admin_user_client.post("/employees/", json=employee_payload())
        (row,) = await audit_rows(sessionmaker)
        assert row.request_id == response.headers["x-request-id"]

    async def test_a_rolled_back_write_leaves_no_audit_row(
        self, admin_user_client, make_employees, sessionmaker
    ):
        await make_employees({}, {"emp_id": 2002})
        conflict = await admin_user_client.patch("/employees/2002", json={"emp_id": 1001})
        assert conflict.status_code == 409
        duplicate = await admin_user_client.post("/employees/", json=employee_payload())
        assert duplicate.status_code == 409
        assert await audit_rows(sessionmaker) == []

    async def test_a_refused_precondition_leaves_no_audit_row(
        self, admin_user_client, make_employees, sessionmaker
    ):
        await make_employees({})
        response = await admin_user_client.delete("/employees/1001", headers={"If-Match": '"x"'})
        assert response.status_code == 412
        assert await audit_rows(sessionmaker) == []


class TestHistoryEndpoint:
    async def test_newest_first_with_the_changes(self, admin_user_client):
        await admin_user_client.post("/employees/", json=employee_payload())
        for city in ("Paris", "Rome"):
            await admin_user_client.patch("/employees/1001", json={"city": city})
        response = await admin_user_client.get(HISTORY)
        assert response.status_code == 200
        entries = response.json()
        assert [(e["action"], e["version"]) for e in entries] == [
            ("update", 3),
            ("update", 2),
            ("create", 1),
        ]
        assert entries[0]["changes"] == {"city": {"before": "Paris", "after": "Rome"}}
        assert entries[0]["actor_username"] == "root.admin"
        assert response.headers["x-total-count"] == "3"

    async def test_paginated(self, admin_user_client):
        await admin_user_client.post("/employees/", json=employee_payload())
        for i in range(4):
            await admin_user_client.patch("/employees/1001", json={"city": f"City {i}"})
        first = await admin_user_client.get(HISTORY, params={"limit": 2})
        assert [e["version"] for e in first.json()] == [5, 4]
        assert first.headers["x-total-count"] == "5"
        assert 'rel="next"' in first.headers["link"]
        last = await admin_user_client.get(HISTORY, params={"limit": 2, "offset": 4})
        assert [e["version"] for e in last.json()] == [1]

    async def test_still_answers_for_a_deleted_employee(self, admin_user_client):
        await admin_user_client.post("/employees/", json=employee_payload())
        await admin_user_client.delete("/employees/1001")
        assert (await admin_user_client.get("/employees/1001")).status_code == 404
        response = await admin_user_client.get(HISTORY)
        assert response.status_code == 200
        assert [e["action"] for e in response.json()] == ["delete", "create"]

    async def test_follows_a_renumbered_record(self, admin_user_client):
        await admin_user_client.post("/employees/", json=employee_payload())
        await admin_user_client.patch("/employees/1001", json={"emp_id": 2002})
        new = (await admin_user_client.get("/employees/2002/history")).json()
        old = (await admin_user_client.get(HISTORY)).json()
        assert new == old
        assert new[0]["changes"] == {"emp_id": {"before": 1001, "after": 2002}}

    async def test_a_recreated_emp_id_shows_the_current_record_only(self, admin_user_client):
        await admin_user_client.post("/employees/", json=employee_payload())
        await admin_user_client.delete("/employees/1001")
        await admin_user_client.post("/employees/", json=employee_payload(city="Oslo"))
        entries = (await admin_user_client.get(HISTORY)).json()
        assert [e["action"] for e in entries] == ["create"]
        assert entries[0]["changes"]["city"]["after"] == "Oslo"

    async def test_unknown_employee_is_404(self, admin_user_client):
        response = await admin_user_client.get("/employees/4242/history")
        assert response.status_code == 404

    async def test_regular_user_gets_403(self, normal_user_client):
        assert (await normal_user_client.get(HISTORY)).status_code == 403

    async def test_anonymous_gets_401(self, client):
        assert (await client.get(HISTORY)).status_code == 401


@pytest.mark.postgres_only
async def test_every_concurrent_write_has_exactly_one_audit_row(admin_user_client, sessionmaker):
    await admin_user_client.post("/employees/", json=employee_payload())
    responses = await asyncio.gather(
        *(admin_user_client.patch("/employees/1001", json={"city": f"C{i}"}) for i in range(20))
    )
    assert {r.status_code for r in responses} == {200}
    async with sessionmaker() as session:
        versions = (
            await session.execute(
                select(EmployeeAudit.version, func.count()).group_by(EmployeeAudit.version)  # type: ignore[arg-type]
            )
        ).all()
    assert sorted(versions) == [(v, 1) for v in range(1, 22)]
