"""Idempotent creates: a retried POST with the same Idempotency-Key inserts once."""

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from app.core.types import utc_now
from app.employees.history.models import EmployeeAudit
from app.employees.models import Employee
from app.idempotency.models import IdempotencyKey
from tests.conftest import employee_payload, make_settings

KEY = {"Idempotency-Key": "3f1c9a52-0d4e-4b7e-9a55-1f1ad6f6f1b1"}


async def count(sessionmaker: Any, model: Any) -> int:
    async with sessionmaker() as session:
        return (await session.execute(select(func.count()).select_from(model))).scalar_one()


class TestIdempotentCreate:
    async def test_retry_returns_the_original_answer_without_a_second_insert(
        self, admin_user_client, sessionmaker
    ):
        first = await admin_user_client.post("/employees/", json=employee_payload(), headers=KEY)
        assert first.status_code == 201
        assert "idempotent-replayed" not in first.headers
        retry = await admin_user_client.post("/employees/", json=employee_payload(), headers=KEY)
        assert retry.status_code == 201
        assert retry.json() == first.json()
        assert retry.headers["location"] == first.headers["location"] == "/employees/1001"
        assert retry.headers["etag"] == first.headers["etag"]
        assert retry.headers["idempotent-replayed"] == "true"
        assert await count(sessionmaker, Employee) == 1
        assert await count(sessionmaker, EmployeeAudit) == 1

    async def test_the_replay_is_the_original_even_after_the_record_changed(
        self, admin_user_client
    ):
        first = await admin_user_client.post("/employees/", json=employee_payload(), headers=KEY)
        await admin_user_client.patch("/employees/1001", json={"city": "Paris"})
        retry = await admin_user_client.post("/employees/", json=employee_payload(), headers=KEY)
        assert retry.json() == first.json()
        assert retry.json()["city"] == "London"

    async def test_key_order_and_spacing_do_not_make_another_body(self, admin_user_client):
        payload = employee_payload()
        await admin_user_client.post("/employees/", json=payload, headers=KEY)
        reordered = dict(reversed(list(payload.items())))
        retry = await admin_user_client.post("/employees/", json=reordered, headers=KEY)
        assert retry.status_code == 201
        assert retry.headers["idempotent-replayed"] == "true"

    async def test_same_key_with_another_body_is_422_and_writes_nothing(
        self, admin_user_client, sessionmaker
    ):
        await admin_user_client.post("/employees/", json=employee_payload(), headers=KEY)
        other = await admin_user_client.post(
            "/employees/", json=employee_payload(emp_id=2002), headers=KEY
        )
        assert other.status_code == 422
        assert other.json()["detail"][0]["loc"] == ["header", "idempotency-key"]
        assert await count(sessionmaker, Employee) == 1

    async def test_without_a_key_a_repeat_is_a_conflict(self, admin_user_client):
        await admin_user_client.post("/employees/", json=employee_payload())
        again = await admin_user_client.post("/employees/", json=employee_payload())
        assert again.status_code == 409

    async def test_a_failed_create_stores_nothing_and_may_be_retried(
        self, admin_user_client, make_employees, sessionmaker
    ):
        (taken,) = await make_employees({})
        conflict = await admin_user_client.post("/employees/", json=employee_payload(), headers=KEY)
        assert conflict.status_code == 409
        assert await count(sessionmaker, IdempotencyKey) == 0
        assert (await admin_user_client.delete("/employees/1001")).status_code == 204
        retry = await admin_user_client.post("/employees/", json=employee_payload(), headers=KEY)
        assert retry.status_code == 201
        assert retry.json()["id"] != str(taken.id)

    async def test_keys_belong_to_their_account(
        self, admin_user_client, make_user, client_for, sessionmaker
    ):
        await admin_user_client.post("/employees/", json=employee_payload(), headers=KEY)
        other_admin = await make_user("other.admin", is_admin=True)
        async with client_for(other_admin) as other:
            response = await other.post(
                "/employees/", json=employee_payload(emp_id=2002), headers=KEY
            )
        assert response.status_code == 201
        assert await count(sessionmaker, Employee) == 2

    async def test_an_expired_key_starts_afresh(self, admin_user_client, sessionmaker):
        await admin_user_client.post("/employees/", json=employee_payload(), headers=KEY)
        async with sessionmaker() as session:
            await session.execute(
                update(IdempotencyKey).values(expires_at=utc_now() - timedelta(seconds=1))
            )
            await session.commit()
        retry = await admin_user_client.post(
            "/employees/", json=employee_payload(emp_id=2002), headers=KEY
        )
        assert retry.status_code == 201
        assert "idempotent-replayed" not in retry.headers
        assert await count(sessionmaker, IdempotencyKey) == 1

    @pytest.mark.parametrize("key", ["", "x" * 256, "has space", "naïve"])
    async def test_unusable_keys_are_422(self, admin_user_client, sessionmaker, key):
        response = await admin_user_client.post(
            "/employees/",
            json=employee_payload(),
            headers={"Idempotency-Key": key.encode("utf-8")},  # type: ignore[dict-item]
        )
        assert response.status_code == 422
        assert await count(sessionmaker, Employee) == 0

    async def test_regular_user_gets_403_and_no_key_is_stored(
        self, normal_user_client, sessionmaker
    ):
        response = await normal_user_client.post(
            "/employees/", json=employee_payload(), headers=KEY
        )
        assert response.status_code == 403
        assert await count(sessionmaker, IdempotencyKey) == 0


class TestKeyLifetime:
    @pytest.fixture
    def settings(self, backend, shared_postgres_url):
        url = "sqlite+aiosqlite://" if backend == "sqlite" else shared_postgres_url
        return make_settings(url, idempotency_key_ttl_hours=2)

    async def test_the_key_lives_as_long_as_the_setting_says(self, admin_user_client, sessionmaker):
        await admin_user_client.post("/employees/", json=employee_payload(), headers=KEY)
        async with sessionmaker() as session:
            (stored,) = (await session.execute(select(IdempotencyKey))).scalars()
        assert stored.expires_at - stored.created_at == timedelta(hours=2)


@pytest.mark.postgres_only
class TestConcurrentRetries:
    async def test_twenty_simultaneous_retries_insert_once(self, admin_user_client, sessionmaker):
        responses = await asyncio.gather(
            *(
                admin_user_client.post("/employees/", json=employee_payload(), headers=KEY)
                for _ in range(20)
            )
        )
        assert [r.status_code for r in responses] == [201] * 20
        assert len({r.json()["id"] for r in responses}) == 1
        assert sum("idempotent-replayed" in r.headers for r in responses) == 19
        assert await count(sessionmaker, Employee) == 1
        assert await count(sessionmaker, EmployeeAudit) == 1

    async def test_one_key_with_different_bodies_at_once_creates_one_and_refuses_the_rest(
        self, admin_user_client, sessionmaker
    ):
        for round_ in range(30):
            key = {"Idempotency-Key": f"race-{round_}"}
            bodies = [employee_payload(10_000 + round_ * 10 + i) for i in range(2)]
            responses = await asyncio.gather(
                *(admin_user_client.post("/employees/", json=body, headers=key) for body in bodies)
            )
            statuses = sorted(r.status_code for r in responses)
            assert statuses == [201, 422], [r.text for r in responses]
            refused = next(r for r in responses if r.status_code == 422)
            assert refused.json()["detail"][0]["type"] == "idempotency_key_reused"
        assert await count(sessionmaker, Employee) == 30
        assert await count(sessionmaker, EmployeeAudit) == 30
        assert await count(sessionmaker, IdempotencyKey) == 30

    async def test_keys_and_bodies_mixed_at_once_never_5xx(self, admin_user_client, sessionmaker):
        """Three keys, each sent with its own body and another key's, twelve requests at once:
        each key answers for one body only, and only the bodies that won a key are written."""
        keys = [{"Idempotency-Key": f"mixed-{n}"} for n in range(3)]
        bodies = [employee_payload(20_000 + n) for n in range(3)]
        requests = [(k, b) for k in range(3) for b in (k, (k + 1) % 3)] * 2
        responses = await asyncio.gather(
            *(
                admin_user_client.post("/employees/", json=bodies[b], headers=keys[k])
                for k, b in requests
            )
        )
        assert all(r.status_code in (201, 409, 422) for r in responses), [r.text for r in responses]
        created = {r.json()["emp_id"] for r in responses if r.status_code == 201}
        async with sessionmaker() as session:
            stored = set((await session.execute(select(Employee.emp_id))).scalars())
            answers = (await session.execute(select(IdempotencyKey))).scalars().all()
        # Every record written is the answer stored under exactly one key, and was answered.
        assert stored == created == {a.response_body["emp_id"] for a in answers}
        assert len(answers) == len(stored) >= 1
