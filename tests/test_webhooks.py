"""Webhook endpoints as administrators manage them: register (the secret shown once), list,
read, change, delete, rotate the secret; who may; what is refused."""

import base64
import uuid
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select

from app.webhooks.models import WebhookEndpoint
from app.webhooks.schemas import MAX_ENDPOINTS

# A public address written as such: nothing to resolve, nothing contacted at registration.
PUBLIC_URL = "https://93.184.215.14/hooks/employees"
ALL_TYPES = ["employee.created", "employee.updated", "employee.deleted"]


def registration(**overrides: Any) -> dict[str, Any]:
    return {"url": PUBLIC_URL, "event_types": ALL_TYPES, "description": "payroll"} | overrides


async def create(client: AsyncClient, **overrides: Any) -> dict[str, Any]:
    response = await client.post("/v1/webhooks/", json=registration(**overrides))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


class TestCreateWebhook:
    async def test_admin_gets_201_with_the_secret_once(self, admin_user_client: AsyncClient):
        created = await create(admin_user_client)
        assert created["url"] == PUBLIC_URL
        assert created["event_types"] == ALL_TYPES
        assert created["active"] is True
        assert created["secret"].startswith("whsec_")
        assert len(base64.b64decode(created["secret"].removeprefix("whsec_"))) == 32
        read = (await admin_user_client.get(f"/v1/webhooks/{created['id']}")).json()
        assert "secret" not in read
        listed = await admin_user_client.get("/v1/webhooks/")
        assert [item["id"] for item in listed.json()] == [created["id"]]
        assert "secret" not in listed.json()[0]
        assert listed.headers["X-Total-Count"] == "1"

    async def test_event_types_are_kept_in_their_order(self, admin_user_client: AsyncClient):
        created = await create(admin_user_client, event_types=["employee.deleted"])
        assert created["event_types"] == ["employee.deleted"]

    async def test_regular_user_and_auditor_get_403(
        self, normal_user_client: AsyncClient, auditor_user_client: AsyncClient, session: Any
    ):
        for client in (normal_user_client, auditor_user_client):
            assert (await client.post("/v1/webhooks/", json=registration())).status_code == 403
            assert (await client.get("/v1/webhooks/")).status_code == 403
        count = await session.execute(select(func.count()).select_from(WebhookEndpoint))
        assert count.scalar_one() == 0

    async def test_api_keys_and_anonymous_callers_are_refused(self, client: AsyncClient):
        anonymous = await client.get("/v1/webhooks/")
        assert anonymous.status_code == 401
        keyed = await client.get(
            "/v1/webhooks/", headers={"Authorization": "Bearer erk_" + "x" * 43}
        )
        assert keyed.status_code == 403

    @pytest.mark.parametrize(
        "change",
        [
            {"event_types": []},
            {"event_types": ["employee.created", "employee.created"]},
            {"event_types": ["employee.exploded"]},
            {"url": ""},
            {"url": "ftp://93.184.215.14/x"},
            {"url": "https://user:pw@93.184.215.14/x"},
            {"url": "https://93.184.215.14/x#frag"},
            {"url": "https://93.184.215.14/" + "a" * 2000},
            {"url": "https://93.184.215.14/\x00"},
            {"url": "not a url"},
            {"description": "x" * 201},
            {"secret": "whsec_mine"},
        ],
    )
    async def test_bad_input_gets_422_and_nothing_is_stored(
        self, admin_user_client: AsyncClient, session: Any, change: dict[str, Any]
    ):
        response = await admin_user_client.post("/v1/webhooks/", json=registration() | change)
        assert response.status_code == 422, response.text
        count = await session.execute(select(func.count()).select_from(WebhookEndpoint))
        assert count.scalar_one() == 0

    async def test_at_most_the_limit(self, admin_user_client: AsyncClient):
        for _ in range(MAX_ENDPOINTS):
            await create(admin_user_client)
        response = await admin_user_client.post("/v1/webhooks/", json=registration())
        assert response.status_code == 409


class TestUpdateWebhook:
    async def test_changes_only_what_was_sent(self, admin_user_client: AsyncClient):
        created = await create(admin_user_client)
        response = await admin_user_client.patch(
            f"/v1/webhooks/{created['id']}",
            json={"event_types": ["employee.updated"], "active": False},
        )
        assert response.status_code == 200
        body = response.json()
        assert body["event_types"] == ["employee.updated"]
        assert body["active"] is False
        assert body["url"] == PUBLIC_URL and body["description"] == "payroll"
        again = (await admin_user_client.get(f"/v1/webhooks/{created['id']}")).json()
        assert again == body

    async def test_a_new_url_is_checked(self, admin_user_client: AsyncClient):
        created = await create(admin_user_client)
        path = f"/v1/webhooks/{created['id']}"
        refused = await admin_user_client.patch(path, json={"url": "https://127.0.0.1/x"})
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"] == ["body", "url"]
        moved = await admin_user_client.patch(path, json={"url": "https://93.184.215.15/x"})
        assert moved.json()["url"] == "https://93.184.215.15/x"

    @pytest.mark.parametrize(
        "change", [{"url": None}, {"active": "yes"}, {"event_types": []}, {"other": 1}]
    )
    async def test_bad_change_gets_422(self, admin_user_client: AsyncClient, change: Any):
        created = await create(admin_user_client)
        response = await admin_user_client.patch(f"/v1/webhooks/{created['id']}", json=change)
        assert response.status_code == 422

    async def test_unknown_id_gets_404(self, admin_user_client: AsyncClient):
        missing = "/v1/webhooks/00000000-0000-4000-8000-000000000000"
        assert (await admin_user_client.patch(missing, json={"active": True})).status_code == 404
        assert (await admin_user_client.get(missing)).status_code == 404
        assert (await admin_user_client.delete(missing)).status_code == 404
        assert (await admin_user_client.post(missing + "/rotate-secret")).status_code == 404
        assert (await admin_user_client.get(missing + "/deliveries")).status_code == 404
        retry = await admin_user_client.post(missing + "/deliveries/1/retry")
        assert retry.status_code == 404

    async def test_regular_user_gets_403(
        self, admin_user_client: AsyncClient, normal_user_client: AsyncClient
    ):
        created = await create(admin_user_client)
        path = f"/v1/webhooks/{created['id']}"
        assert (await normal_user_client.patch(path, json={"active": False})).status_code == 403
        assert (await normal_user_client.delete(path)).status_code == 403
        assert (await normal_user_client.post(path + "/rotate-secret")).status_code == 403
        assert (await normal_user_client.get(path + "/deliveries")).status_code == 403


class TestDeleteWebhook:
    async def test_deleted_then_gone(self, admin_user_client: AsyncClient):
        created = await create(admin_user_client)
        path = f"/v1/webhooks/{created['id']}"
        assert (await admin_user_client.delete(path)).status_code == 204
        assert (await admin_user_client.get(path)).status_code == 404
        assert (await admin_user_client.get("/v1/webhooks/")).json() == []


class TestRotateSecret:
    async def test_a_new_secret_shown_once(self, admin_user_client: AsyncClient, session: Any):
        created = await create(admin_user_client)
        rotated = await admin_user_client.post(f"/v1/webhooks/{created['id']}/rotate-secret")
        assert rotated.status_code == 200
        secret = rotated.json()["secret"]
        assert secret.startswith("whsec_") and secret != created["secret"]
        stored = await session.get(WebhookEndpoint, uuid.UUID(created["id"]))
        assert stored.secret == secret and stored.previous_secret == created["secret"]


class TestDeliveriesList:
    async def test_empty_list_and_unknown_delivery(self, admin_user_client: AsyncClient):
        created = await create(admin_user_client)
        path = f"/v1/webhooks/{created['id']}/deliveries"
        listed = await admin_user_client.get(path)
        assert listed.status_code == 200 and listed.json() == []
        assert listed.headers["X-Total-Count"] == "0"
        assert (await admin_user_client.post(path + "/5/retry")).status_code == 404
        assert (await admin_user_client.post(path + "/0/retry")).status_code == 422
