"""Deliveries, end to end: a change made through the API reaches a real HTTP receiver, signed as
the Standard Webhooks specification says; failures are retried with the same `webhook-id` until
the attempts run out; redirects are not followed; a failing endpoint is deactivated; nothing a
rolled-back write did is sent; each employee's events arrive in order. The worker's rounds are
run by the test (`run_once`), so no poll interval is waited for."""

import asyncio
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from httpx import AsyncClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from app.core.config import Settings
from app.core.types import utc_now
from app.db.engine import Database
from app.webhooks.delivery import new_client
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from app.webhooks.worker import WebhookWorker
from tests.conftest import employee_payload
from tests.webhook_receiver import Receiver, verify

ALL_TYPES = ["employee.created", "employee.updated", "employee.deleted"]
# Receivers on 127.0.0.1 over http, short timeouts, retries in hundredths of a second.
FAST = {
    "webhook_allow_http": True,
    "webhook_allow_private_targets": True,
    "webhook_timeout_seconds": 0.5,
    "webhook_retry_base_seconds": 0.01,
    "webhook_max_attempts": 3,
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update=FAST)


@pytest.fixture
async def worker(settings: Settings, database: Database) -> AsyncIterator[WebhookWorker]:
    async with new_client() as client:
        yield WebhookWorker(settings, database, client)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


async def register(
    client: AsyncClient, receiver: Receiver, event_types: list[str] = ALL_TYPES
) -> dict[str, Any]:
    response = await client.post(
        "/v1/webhooks/", json={"url": receiver.url, "event_types": event_types}
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    receiver.secret = created["secret"]
    return created


async def drain(worker: WebhookWorker, done: Callable[[], Any], seconds: float = 10) -> None:
    """Run the worker's rounds until `done()` (sync or async) holds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await worker.run_once()
        result = done()
        if hasattr(result, "__await__"):
            result = await result
        if result:
            return
        await asyncio.sleep(0.01)  # the retry base is a hundredth of a second
    raise AssertionError("the deliveries did not settle in time")


async def attempted(sessions: async_sessionmaker[AsyncSession]) -> bool:
    """Whether the (one) delivery has had an attempt: on PostgreSQL a change joins the feed once
    every older transaction of the cluster has ended, so it may take more than one round."""
    return any(delivery.attempts for delivery in await stored(sessions))


async def stored(sessions: async_sessionmaker[AsyncSession]) -> list[WebhookDelivery]:
    async with sessions() as session:
        statement = select(WebhookDelivery).order_by(col(WebhookDelivery.id))
        return list((await session.execute(statement)).scalars())


async def endpoint_row(
    sessions: async_sessionmaker[AsyncSession], endpoint_id: str
) -> WebhookEndpoint:
    async with sessions() as session:
        found = await session.get(WebhookEndpoint, uuid.UUID(endpoint_id))
        assert found is not None
        return found


class TestDelivery:
    async def test_a_change_arrives_signed(
        self, admin_user_client: AsyncClient, receiver: Receiver, worker: WebhookWorker
    ):
        endpoint = await register(admin_user_client, receiver)
        created = await admin_user_client.post("/v1/employees/", json=employee_payload(1001))
        assert created.status_code == 201
        await drain(worker, lambda: receiver.delivered())
        (item,) = receiver.delivered()
        assert item.verified
        assert item.webhook_id.startswith("msg_")
        assert abs(int(item.headers["webhook-timestamp"]) - time.time()) < 60
        assert item.headers["content-type"] == "application/json"
        assert item.body["type"] == "employee.created"
        assert item.body["data"]["emp_id"] == 1001
        assert item.body["data"]["type"] == "employee.created"
        assert item.body["timestamp"] == item.body["data"]["occurred_at"]
        listed = await admin_user_client.get(f"/v1/webhooks/{endpoint['id']}/deliveries")
        (delivery,) = listed.json()
        assert delivery["webhook_id"] == item.webhook_id
        assert delivery["event_id"] == item.body["data"]["event_id"]
        assert delivery["state"] == "delivered" and delivery["attempts"] == 1
        assert delivery["last_status"] == 204 and delivery["next_attempt_at"] is None

    async def test_only_the_chosen_event_types(
        self, admin_user_client: AsyncClient, receiver: Receiver, worker: WebhookWorker
    ):
        await register(admin_user_client, receiver, ["employee.deleted"])
        await admin_user_client.post("/v1/employees/", json=employee_payload(1001))
        assert (await admin_user_client.delete("/v1/employees/1001")).status_code == 204
        await drain(worker, lambda: receiver.delivered())
        await worker.run_once()
        assert [item.body["type"] for item in receiver.delivered()] == ["employee.deleted"]

    async def test_a_rolled_back_write_sends_nothing(
        self,
        admin_user_client: AsyncClient,
        receiver: Receiver,
        worker: WebhookWorker,
        sessionmaker: async_sessionmaker[AsyncSession],
    ):
        await register(admin_user_client, receiver)
        await admin_user_client.post("/v1/employees/", json=employee_payload(1001))
        taken = await admin_user_client.post("/v1/employees/", json=employee_payload(1001))
        assert taken.status_code == 409
        await drain(worker, lambda: receiver.delivered())
        await worker.run_once()
        assert len(receiver.delivered()) == 1
        assert len(await stored(sessionmaker)) == 1

    async def test_changes_before_registration_are_not_sent(
        self, admin_user_client: AsyncClient, receiver: Receiver, worker: WebhookWorker
    ):
        await admin_user_client.post("/v1/employees/", json=employee_payload(1001))
        await register(admin_user_client, receiver)
        await admin_user_client.post("/v1/employees/", json=employee_payload(1002))
        await drain(worker, lambda: receiver.delivered())
        await worker.run_once()
        assert [item.body["data"]["emp_id"] for item in receiver.delivered()] == [1002]


class TestRetries:
    async def test_non_2xx_is_retried_with_the_same_id(
        self,
        admin_user_client: AsyncClient,
        receiver: Receiver,
        worker: WebhookWorker,
        sessionmaker: async_sessionmaker[AsyncSession],
    ):
        await register(admin_user_client, receiver)
        receiver.statuses = [500, 503]
        await admin_user_client.post("/v1/employees/", json=employee_payload(1001))
        await drain(worker, lambda: receiver.delivered())
        assert len(receiver.received) == 3
        assert len({item.webhook_id for item in receiver.received}) == 1
        assert all(item.verified for item in receiver.received)
        (delivery,) = await stored(sessionmaker)
        assert (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 3, 204)

    async def test_connection_errors_until_failed_then_the_next_goes(
        self,
        admin_user_client: AsyncClient,
        receiver: Receiver,
        worker: WebhookWorker,
        sessionmaker: async_sessionmaker[AsyncSession],
    ):
        endpoint = await register(admin_user_client, receiver)
        receiver.stop()
        await admin_user_client.post("/v1/employees/", json=employee_payload(1001))

        async def failed() -> bool:
            return [d.state for d in await stored(sessionmaker)] == ["failed"]

        await drain(worker, failed)
        (delivery,) = await stored(sessionmaker)
        assert delivery.attempts == 3 and delivery.last_status is None
        assert delivery.last_error is not None and "connect" in delivery.last_error
        assert (await endpoint_row(sessionmaker, endpoint["id"])).failing_since is not None
        receiver.start()  # the same port
        await admin_user_client.patch("/v1/employees/1001", json={"city": "Paris"})
        await drain(worker, lambda: receiver.delivered())
        assert [item.body["type"] for item in receiver.delivered()] == ["employee.updated"]
        assert (await endpoint_row(sessionmaker, endpoint["id"])).failing_since is None

    async def test_a_timeout_is_a_failed_attempt(
        self,
        admin_user_client: AsyncClient,
        receiver: Receiver,
        worker: WebhookWorker,
        sessionmaker: async_sessionmaker[AsyncSession],
    ):
        await register(admin_user_client, receiver)
        receiver.delay = 1.0  # twice the timeout
        await admin_user_client.post("/v1/employees/", json=employee_payload(1001))
        await drain(worker, lambda: attempted(sessionmaker))
        (delivery,) = await stored(sessionmaker)
        assert delivery.state == "pending" and delivery.last_error == "timed out"
        receiver.delay = 0
        await drain(worker, lambda: receiver.delivered())

    async def test_redirects_are_not_followed(
        self,
        admin_user_client: AsyncClient,
        receiver: Receiver,
        worker: WebhookWorker,
        sessionmaker: async_sessionmaker[AsyncSession],
    ):
        await register(admin_user_client, receiver)
        receiver.redirect_to = f"http://127.0.0.1:{receiver.port}/elsewhere"
        await admin_user_client.post("/v1/employees/", json=employee_payload(1001))
        await drain(worker, lambda: attempted(sessionmaker))
        (delivery,) = await stored(sessionmaker)
        assert delivery.last_status == 307 and delivery.state == "pending"
        assert {item.path for item in receiver.received} == {"/hook:307"}

    async def test_manual_retry_sends_it_again_with_the_same_id(
        self,
        admin_user_client: AsyncClient,
        receiver: Receiver,
        worker: WebhookWorker,
        sessionmaker: async_sessionmaker[AsyncSession],
    ):
        endpoint = await register(admin_user_client, receiver)
        receiver.status = 500
        await admin_user_client.post("/v1/employees/", json=employee_payload(1001))

        async def failed() -> bool:
            return [d.state for d in await stored(sessionmaker)] == ["failed"]

        await drain(worker, failed)
        (delivery,) = await stored(sessionmaker)
        receiver.status = 204
        path = f"/v1/webhooks/{endpoint['id']}/deliveries/{delivery.id}/retry"
        retried = await admin_user_client.post(path)
        assert retried.status_code == 202
        assert retried.json()["state"] == "pending" and retried.json()["attempts"] == 0
        await drain(worker, lambda: receiver.delivered())
        assert {item.webhook_id for item in receiver.received} == {f"msg_{delivery.id}"}


class TestEndpointHealth:
    async def test_deactivated_after_failing_too_long_and_resumed(
        self,
        admin_user_client: AsyncClient,
        receiver: Receiver,
        worker: WebhookWorker,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
    ):
        endpoint = await register(admin_user_client, receiver)
        since = utc_now() - timedelta(hours=settings.webhook_disable_after_hours + 1)
        async with sessionmaker() as session:
            await session.execute(update(WebhookEndpoint).values(failing_since=since))
            await session.commit()
        receiver.status = 500
        await admin_user_client.post("/v1/employees/", json=employee_payload(1001))
        await drain(worker, lambda: attempted(sessionmaker))
        path = f"/v1/webhooks/{endpoint['id']}"
        read = (await admin_user_client.get(path)).json()
        assert read["active"] is False and read["disabled_at"] is not None
        await worker.run_once()
        assert len(receiver.received) == 1  # an inactive endpoint is sent nothing
        receiver.status = 204
        resumed = await admin_user_client.patch(path, json={"active": True})
        assert resumed.json()["failing_since"] is None and resumed.json()["disabled_at"] is None
        await drain(worker, lambda: receiver.delivered())
        assert (await admin_user_client.get(path)).json()["active"] is True


class TestSigning:
    async def test_after_a_rotation_both_secrets_verify(
        self, admin_user_client: AsyncClient, receiver: Receiver, worker: WebhookWorker
    ):
        endpoint = await register(admin_user_client, receiver)
        old = receiver.secret
        rotated = await admin_user_client.post(f"/v1/webhooks/{endpoint['id']}/rotate-secret")
        new = rotated.json()["secret"]
        await admin_user_client.post("/v1/employees/", json=employee_payload(1001))
        receiver.secret = new
        await drain(worker, lambda: receiver.delivered())
        (item,) = receiver.delivered()
        assert item.verified
        assert len(item.headers["webhook-signature"].split(" ")) == 2
        headers, body = item.headers, item.raw
        assert verify(old, headers, body) and verify(new, headers, body)
        assert not verify("whsec_" + "A" * 44, headers, body)


class TestOrder:
    async def test_each_employee_in_order_despite_failures(
        self, admin_user_client: AsyncClient, receiver: Receiver, worker: WebhookWorker
    ):
        await register(admin_user_client, receiver)
        receiver.statuses = [500, 500]
        await admin_user_client.post("/v1/employees/", json=employee_payload(1001))
        for city in ("Paris", "Rome"):
            await admin_user_client.patch("/v1/employees/1001", json={"city": city})
        await drain(worker, lambda: len(receiver.delivered()) == 3)
        versions = [item.body["data"]["version"] for item in receiver.delivered()]
        assert versions == [1, 2, 3]
        arrivals = [item.body["data"]["version"] for item in receiver.received]
        assert arrivals == [1, 1, 1, 2, 3]  # the later events waited for the first


class TestTargetRecheckedAtDelivery:
    async def test_a_target_no_longer_allowed_is_not_contacted(
        self,
        admin_user_client: AsyncClient,
        receiver: Receiver,
        settings: Settings,
        database: Database,
        sessionmaker: async_sessionmaker[AsyncSession],
    ):
        await register(admin_user_client, receiver)
        await admin_user_client.post("/v1/employees/", json=employee_payload(1001))
        strict = settings.model_copy(update={"webhook_allow_private_targets": False})
        async with new_client() as client:
            await drain(WebhookWorker(strict, database, client), lambda: attempted(sessionmaker))
        (delivery,) = await stored(sessionmaker)
        assert delivery.last_error is not None and delivery.last_error.startswith("refused")
        assert receiver.received == []


def certificate(tmp_path: Any, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for `name`: the receiver's TLS context, and a client context
    that trusts it (and checks host names, as every client context does)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    return server, ssl.create_default_context(cafile=str(cert_file))


class TestTls:
    """An https delivery connects to the address it checked, yet TLS names and verifies the
    URL's host: the certificate must be the host's, not merely the address's."""

    @pytest.mark.parametrize(("name", "arrives"), [("localhost", True), ("other.example", False)])
    async def test_the_url_host_is_verified(
        self,
        admin_user_client: AsyncClient,
        settings: Settings,
        database: Database,
        sessionmaker: async_sessionmaker[AsyncSession],
        tmp_path: Any,
        name: str,
        arrives: bool,
    ):
        server, client_context = certificate(tmp_path, name)
        receiver = Receiver(tls=server).start()
        try:
            response = await admin_user_client.post(
                "/v1/webhooks/",
                json={"url": receiver.https_url, "event_types": ["employee.created"]},
            )
            receiver.secret = response.json()["secret"]
            await admin_user_client.post("/v1/employees/", json=employee_payload(1001))
            async with new_client(verify=client_context) as client:
                worker = WebhookWorker(settings, database, client)
                await drain(worker, lambda: attempted(sessionmaker))
        finally:
            receiver.stop()
        (delivery,) = await stored(sessionmaker)
        if arrives:
            (item,) = receiver.delivered()
            assert item.verified and item.headers["host"] == f"localhost:{receiver.port}"
            assert delivery.state == "delivered"
        else:
            assert receiver.received == [] and delivery.state == "pending"
            assert delivery.last_error is not None and "connect" in delivery.last_error


class TestRetention:
    async def test_settled_deliveries_past_retention_are_deleted(
        self,
        admin_user_client: AsyncClient,
        receiver: Receiver,
        worker: WebhookWorker,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
    ):
        endpoint = await register(admin_user_client, receiver)
        old = utc_now() - timedelta(days=settings.webhook_delivery_retention_days + 1)
        rows = [("delivered", old), ("failed", old), ("pending", old), ("delivered", utc_now())]
        async with sessionmaker() as session:
            for number, (state, created_at) in enumerate(rows, start=1):
                session.add(
                    WebhookDelivery(
                        endpoint_id=uuid.UUID(endpoint["id"]),
                        event_id=f"ev_{number}",
                        event_tx=0,
                        event_seq=number,
                        event_type="employee.created",
                        employee_id=uuid.uuid4(),
                        payload="{}",
                        state=state,
                        created_at=created_at,
                        next_attempt_at=utc_now() + timedelta(days=1),
                    )
                )
            await session.commit()
        assert await worker.purge() == 2
        kept = [(row.state, row.event_seq) for row in await stored(sessionmaker)]
        assert kept == [("pending", 3), ("delivered", 4)]
