"""Version 1 under /v1: every API operation answers there and at its root path alike; the schema
documents /v1; answers that name a path keep the prefix the client used."""

import re
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import func, select

from app.employees.models import Employee
from app.main import create_app
from tests.conftest import ADMIN_PASSWORD, employee_payload
from tests.test_csv import HEADER, csv_file, upload

KEY = {"Idempotency-Key": "b6a4c5e0-1f7e-4a53-8a8f-5d0f5e1c2a11"}
UNVERSIONED = ("/health/",)  # probes: at the root only


def links(response: Any) -> dict[str, str]:
    found = re.findall(r'<([^>]+)>; rel="(\w+)"', response.headers["link"])
    return {rel: url for url, rel in found}


def same(response: Any) -> tuple[int, Any]:
    return response.status_code, response.json()


class TestTheSchema:
    def test_documents_every_api_path_under_v1_and_the_probes_at_the_root(self):
        paths = create_app().openapi()["paths"]
        assert {path for path in paths if path.startswith(UNVERSIONED)} == {
            "/health/live",
            "/health/ready",
        }
        unprefixed = [p for p in paths if not p.startswith(("/v1/", *UNVERSIONED))]
        assert unprefixed == []

    async def test_the_token_url_it_names_signs_in(self, client, admin_user):
        schema = (await client.get("/openapi.json")).json()
        (scheme,) = schema["components"]["securitySchemes"].values()
        token_url = scheme["flows"]["password"]["tokenUrl"]
        assert token_url == "/v1/auth/token"
        form = {"username": admin_user.username, "password": ADMIN_PASSWORD}
        response = await client.post(token_url, data=form)
        assert response.status_code == 200
        assert response.json()["token_type"] == "bearer"
        assert response.headers["cache-control"] == "no-store"


class TestBothPrefixes:
    @pytest.mark.parametrize(
        "path",
        ["/employees/7", "/employees/", "/employees", "/employees/7/history", "/users/me"],
    )
    async def test_root_and_v1_give_the_same_answer(self, admin_user_client, make_employees, path):
        await make_employees({"emp_id": 7})
        await admin_user_client.patch("/employees/7", json={"city": "Paris"})

        root = await admin_user_client.get(path)
        versioned = await admin_user_client.get(f"/v1{path}")

        assert root.status_code == 200
        assert same(versioned) == same(root)

    @pytest.mark.parametrize("path", ["/v1/users", "/v1/users/", "/v1/employees", "/v1/employees/"])
    async def test_trailing_slash_twins_answer_without_a_redirect(self, admin_user_client, path):
        response = await admin_user_client.get(path)
        assert response.status_code == 200
        assert isinstance(response.json(), list)

    @pytest.mark.parametrize(
        "path", ["/v1/health/live", "/v1/health/ready", "/v1/metrics", "/v1/docs", "/v1/"]
    )
    async def test_operational_paths_are_not_versioned(self, client, path):
        assert (await client.get(path)).status_code == 404


class TestPathsInAnswers:
    @pytest.mark.parametrize("prefix", ["", "/v1"], ids=["root", "v1"])
    async def test_a_create_is_located_under_the_prefix_it_was_sent_to(
        self, admin_user_client, prefix
    ):
        created = await admin_user_client.post(f"{prefix}/employees/", json=employee_payload())

        assert created.status_code == 201
        assert created.headers["location"] == f"{prefix}/employees/1001"
        followed = await admin_user_client.get(created.headers["location"])
        assert followed.json() == created.json()

    @pytest.mark.parametrize(("first", "retry"), [("", "/v1"), ("/v1", "")])
    async def test_a_keyed_create_retried_on_the_other_prefix_is_replayed(
        self, admin_user_client, sessionmaker, first, retry
    ):
        original = await admin_user_client.post(
            f"{first}/employees/", json=employee_payload(), headers=KEY
        )
        replay = await admin_user_client.post(
            f"{retry}/employees/", json=employee_payload(), headers=KEY
        )

        assert (original.status_code, replay.status_code) == (201, 201)
        assert replay.json() == original.json()
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.headers["etag"] == original.headers["etag"]
        # The same record, located where the retry was sent.
        assert original.headers["location"] == f"{first}/employees/1001"
        assert replay.headers["location"] == f"{retry}/employees/1001"
        async with sessionmaker() as session:
            stored = await session.execute(select(func.count()).select_from(Employee))
            assert stored.scalar_one() == 1

    async def test_list_links_stay_under_v1_and_walk_every_page(
        self, normal_user_client, make_employees
    ):
        await make_employees(*({"emp_id": n} for n in (1, 2, 3)))

        seen, url = [], "/v1/employees/?limit=2&offset=0&sort_by=emp_id"
        while url:
            page = await normal_user_client.get(url)
            assert page.status_code == 200
            seen += [row["emp_id"] for row in page.json()]
            found = links(page)
            assert all(link.startswith("http://test/v1/employees/?") for link in found.values())
            url = found.get("next", "")

        assert seen == [1, 2, 3]

    @pytest.mark.parametrize("path", ["/v1/users/?limit=1", "/v1/employees/7/history?limit=1"])
    async def test_offset_page_links_stay_under_v1(
        self, admin_user_client, make_user, make_employees, path
    ):
        await make_user("second.user")
        await make_employees({"emp_id": 7})
        for city in ("Paris", "Rome"):  # two audit rows
            await admin_user_client.patch("/employees/7", json={"city": city})

        response = await admin_user_client.get(path)

        assert response.status_code == 200
        found = links(response)
        assert set(found) == {"first", "next"}
        base = "http://test" + path.split("?")[0]
        assert all(link.startswith(base + "?") for link in found.values())
        assert (await admin_user_client.get(found["next"])).status_code == 200


class TestCsvUnderV1:
    async def test_import_then_export(self, admin_user_client):
        text = csv_file("1001,Ada Lovelace,London,United Kingdom,1985-12-10")

        checked = await admin_user_client.post(
            "/v1/employees/import", files=upload(text), params={"dry_run": "true"}
        )
        imported = await admin_user_client.post("/v1/employees/import", files=upload(text))
        exported = await admin_user_client.get("/v1/employees/export.csv")

        assert (checked.status_code, checked.json()) == (200, {"valid": 1})
        assert (imported.status_code, imported.json()) == (201, {"created": 1})
        assert exported.status_code == 200
        assert exported.headers["content-type"] == "text/csv; charset=utf-8"
        assert exported.text.splitlines() == [HEADER, text.splitlines()[1]]


async def test_behind_a_proxy_prefix_v1_is_found_inside_it(admin_user_client, app):
    # A root_path (the proxy's own prefix) comes before /v1 and is not the version.
    transport = ASGITransport(app=app, root_path="/hr")
    headers = dict(admin_user_client.headers)
    async with AsyncClient(transport=transport, base_url="http://test", headers=headers) as client:
        created = await client.post("/hr/v1/employees/", json=employee_payload())
        listed = await client.get("/hr/v1/employees/?limit=1")
    assert created.status_code == 201
    assert created.headers["location"] == "/v1/employees/1001"
    assert listed.status_code == 200
    assert links(listed)["first"].startswith("http://test/hr/v1/employees/?")
