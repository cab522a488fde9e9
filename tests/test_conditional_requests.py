"""Optimistic concurrency: versions, ETags, If-None-Match (304), If-Match (412) and 428."""

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from app.employees.history.models import EmployeeAudit
from app.employees.models import Employee
from tests.conftest import make_settings

ONE = "/employees/1001"


async def stored_row(sessionmaker: Any, emp_id: int = 1001) -> Employee | None:
    async with sessionmaker() as session:
        statement = select(Employee).where(Employee.emp_id == emp_id)  # type: ignore[arg-type]
        return (await session.execute(statement)).scalar_one_or_none()


async def audit_count(sessionmaker: Any) -> int:
    async with sessionmaker() as session:
        count = select(func.count()).select_from(EmployeeAudit)
        return (await session.execute(count)).scalar_one()


@pytest.fixture
async def employee(make_employees: Any) -> Employee:
    (created,) = await make_employees({})
    return created


class TestVersionsAndTags:
    async def test_create_starts_at_version_1_with_an_etag(self, admin_user_client):
        response = await admin_user_client.post("/employees/", json={**PAYLOAD})
        assert response.status_code == 201
        body = response.json()
        assert body["version"] == 1
        assert response.headers["etag"] == f'"{body["id"].replace("-", "")}-1"'

    async def test_read_carries_the_etag(self, normal_user_client, employee):
        response = await normal_user_client.get(ONE)
        assert response.status_code == 200
        assert response.headers["etag"] == employee.etag

    async def test_every_change_bumps_the_version_and_the_etag(
        self, admin_user_client, employee, sessionmaker
    ):
        tags = [employee.etag]
        for city in ("Paris", "Rome"):
            response = await admin_user_client.patch(ONE, json={"city": city})
            assert response.status_code == 200
            tags.append(response.headers["etag"])
        response = await admin_user_client.put(ONE, json={**PAYLOAD, "city": "Oslo"})
        tags.append(response.headers["etag"])
        assert response.json()["version"] == 4
        assert len(set(tags)) == 4
        stored = await stored_row(sessionmaker)
        assert stored is not None and stored.version == 4 and stored.city == "Oslo"

    async def test_a_change_that_changes_nothing_keeps_the_version(
        self, admin_user_client, employee, sessionmaker
    ):
        response = await admin_user_client.patch(ONE, json={"city": employee.city})
        assert response.status_code == 200
        assert response.json()["version"] == 1
        assert response.headers["etag"] == employee.etag
        assert await audit_count(sessionmaker) == 0

    async def test_a_recreated_record_does_not_match_the_old_tag(self, admin_user_client, employee):
        assert (await admin_user_client.delete(ONE)).status_code == 204
        created = await admin_user_client.post("/employees/", json=PAYLOAD)
        assert created.json()["version"] == 1
        assert created.headers["etag"] != employee.etag
        response = await admin_user_client.patch(
            ONE, json={"city": "Paris"}, headers={"If-Match": employee.etag}
        )
        assert response.status_code == 412


class TestIfNoneMatch:
    async def test_current_tag_gets_304_without_a_body(self, normal_user_client, employee):
        response = await normal_user_client.get(ONE, headers={"If-None-Match": employee.etag})
        assert response.status_code == 304
        assert response.content == b""
        assert response.headers["etag"] == employee.etag

    @pytest.mark.parametrize("header", ["*", 'W/"{tag}"', '"other", {etag}'])
    async def test_weak_star_and_lists_match(self, normal_user_client, employee, header):
        value = header.format(tag=employee.etag.strip('"'), etag=employee.etag)
        response = await normal_user_client.get(ONE, headers={"If-None-Match": value})
        assert response.status_code == 304

    async def test_old_tag_gets_the_record(self, normal_user_client, admin_user_client, employee):
        await admin_user_client.patch(ONE, json={"city": "Paris"})
        response = await normal_user_client.get(ONE, headers={"If-None-Match": employee.etag})
        assert response.status_code == 200
        assert response.json()["city"] == "Paris"
        assert response.headers["etag"] != employee.etag


class TestIfMatch:
    @pytest.mark.parametrize("method", ["put", "patch", "delete"])
    async def test_stale_tag_gets_412_and_nothing_changes(
        self, admin_user_client, employee, sessionmaker, method
    ):
        await admin_user_client.patch(ONE, json={"city": "Paris"})
        before = await stored_row(sessionmaker)
        kwargs: dict[str, Any] = {"headers": {"If-Match": employee.etag}}
        if method != "delete":
            kwargs["json"] = {**PAYLOAD, "city": "Rome"} if method == "put" else {"city": "Rome"}
        response = await getattr(admin_user_client, method)(ONE, **kwargs)
        assert response.status_code == 412
        assert "changed" in response.json()["detail"]
        after = await stored_row(sessionmaker)
        assert after is not None and before is not None
        assert (after.city, after.version) == (before.city, before.version) == ("Paris", 2)
        assert await audit_count(sessionmaker) == 1  # the first PATCH only

    @pytest.mark.parametrize("header", ["{etag}", "*", '"nope", {etag}'])
    async def test_current_tag_or_star_is_honoured(
        self, admin_user_client, employee, sessionmaker, header
    ):
        value = header.format(etag=employee.etag)
        response = await admin_user_client.patch(
            ONE, json={"city": "Rome"}, headers={"If-Match": value}
        )
        assert response.status_code == 200
        assert response.json()["city"] == "Rome"

    async def test_weak_tag_never_matches_a_write(self, admin_user_client, employee):
        response = await admin_user_client.delete(ONE, headers={"If-Match": f"W/{employee.etag}"})
        assert response.status_code == 412

    async def test_conditional_delete(self, admin_user_client, employee, sessionmaker):
        response = await admin_user_client.delete(ONE, headers={"If-Match": employee.etag})
        assert response.status_code == 204
        assert await stored_row(sessionmaker) is None

    async def test_star_on_a_missing_record_is_404(self, admin_user_client):
        response = await admin_user_client.patch(
            "/employees/4242", json={"city": "X"}, headers={"If-Match": "*"}
        )
        assert response.status_code == 404

    @pytest.mark.parametrize("header", ["abc", '"unterminated', '"a" "b"', ",", ""])
    async def test_malformed_header_is_422(self, admin_user_client, employee, header):
        response = await admin_user_client.patch(
            ONE, json={"city": "Rome"}, headers={"If-Match": header}
        )
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["header", "if-match"]

    async def test_regular_user_gets_403_before_any_precondition(
        self, normal_user_client, employee
    ):
        response = await normal_user_client.patch(
            ONE, json={"city": "Rome"}, headers={"If-Match": '"stale"'}
        )
        assert response.status_code == 403


class TestRequiredIfMatch:
    @pytest.fixture
    def settings(self, backend, shared_postgres_url):
        url = "sqlite+aiosqlite://" if backend == "sqlite" else shared_postgres_url
        return make_settings(url, require_if_match=True)

    @pytest.mark.parametrize("method", ["put", "patch", "delete"])
    async def test_write_without_if_match_gets_428(
        self, admin_user_client, employee, sessionmaker, method
    ):
        kwargs: dict[str, Any] = {}
        if method != "delete":
            kwargs["json"] = PAYLOAD if method == "put" else {"city": "Rome"}
        response = await getattr(admin_user_client, method)(ONE, **kwargs)
        assert response.status_code == 428
        assert "If-Match" in response.json()["detail"]
        stored = await stored_row(sessionmaker)
        assert stored is not None and stored.version == 1

    async def test_write_with_if_match_goes_through(self, admin_user_client, employee):
        response = await admin_user_client.patch(
            ONE, json={"city": "Rome"}, headers={"If-Match": employee.etag}
        )
        assert response.status_code == 200

    async def test_creates_need_no_if_match(self, admin_user_client):
        response = await admin_user_client.post("/employees/", json={**PAYLOAD, "emp_id": 7})
        assert response.status_code == 201


@pytest.mark.postgres_only
class TestConcurrentConditionalWrites:
    async def test_twenty_patches_with_one_tag_yield_one_winner(
        self, admin_user_client, employee, sessionmaker
    ):
        responses = await asyncio.gather(
            *(
                admin_user_client.patch(
                    ONE, json={"city": f"City {i}"}, headers={"If-Match": employee.etag}
                )
                for i in range(20)
            )
        )
        codes = sorted(response.status_code for response in responses)
        assert codes == [200] + [412] * 19
        (winner,) = [r for r in responses if r.status_code == 200]
        stored = await stored_row(sessionmaker)
        assert stored is not None
        assert (stored.city, stored.version) == (winner.json()["city"], 2)
        assert await audit_count(sessionmaker) == 1

    async def test_unconditional_patches_all_apply_in_some_order(
        self, admin_user_client, employee, sessionmaker
    ):
        responses = await asyncio.gather(
            *(admin_user_client.patch(ONE, json={"city": f"City {i}"}) for i in range(20))
        )
        assert [response.status_code for response in responses] == [200] * 20
        assert sorted(r.json()["version"] for r in responses) == list(range(2, 22))
        stored = await stored_row(sessionmaker)
        assert stored is not None and stored.version == 21
        assert await audit_count(sessionmaker) == 20


PAYLOAD = {
    "emp_id": 1001,
    "emp_name": "Ada Lovelace",
    "city": "London",
    "country": "United Kingdom",
    "emp_dob": "1985-12-10",
}
