"""Live streams on PostgreSQL across connections and processes: the LISTEN connection dropped
and back, two server processes on one database, and SIGTERM with streams open."""

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.accounts.models import User
from app.core.config import Settings
from app.db.engine import create_engine, create_sessionmaker
from app.security.passwords import password_context
from tests.conftest import employee_payload, make_settings, mint_token, standing_sign_in
from tests.pg import asyncpg_dsn
from tests.streams_client import open_sse
from tests.test_faults import serving

pytestmark = pytest.mark.postgres_only

DRAIN_SECONDS = 15


async def make_account(settings: Settings, username: str, role: str) -> str:
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            user = User(
                username=username, hashed_password=password_context.hash("x" * 12), role=role
            )
            session.add(user)
            await session.flush()
            session.add(standing_sign_in(user))
            await session.commit()
            return mint_token(user, settings)
    finally:
        await engine.dispose()


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """The frames of a streamed SSE answer, as they arrive (comments included, as {":": ...})."""
    buffer = ""
    async for text in response.aiter_text():
        buffer += text
        *blocks, buffer = buffer.split("\n\n")
        for block in blocks:
            fields: dict[str, str] = {}
            for line in block.split("\n"):
                name, _, value = line.partition(": " if not line.startswith(":") else ":")
                fields[name or ":"] = value
            yield fields


async def next_event(frames: AsyncIterator[dict[str, str]], wait: float = 10) -> dict[str, str]:
    async with asyncio.timeout(wait):
        async for fields in frames:
            if "id" in fields:
                return fields
    raise AssertionError("the stream ended")


class TestListeningConnection:
    async def test_a_dropped_listen_connection_reconnects_and_catches_up(
        self, app_with, admin_user, normal_user, token_for, database_url
    ):
        app = await app_with(stream_heartbeat_seconds=60)  # no heartbeat wake-up helps here
        notifier = app.state.streams.notifier
        stream = await open_sse(app, "/employees/events", token_for(normal_user))
        await asyncio.wait_for(notifier.connected.wait(), 10)
        pid = notifier.connection.get_server_pid()
        admin = await asyncpg.connect(asyncpg_dsn(make_url(app.state.settings.database_url)))
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            headers = {"Authorization": f"Bearer {token_for(admin_user)}"}
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://test", headers=headers
            ) as client:
                # Made while nobody listens (the listener pauses before it connects again).
                response = await client.post("/employees/", json=employee_payload(3001))
                assert response.status_code == 201
                frame = await stream.next(wait=10)
                assert frame.data["emp_id"] == 3001
                await asyncio.wait_for(notifier.connected.wait(), 10)
                assert notifier.connection.get_server_pid() != pid
                # And it listens again: the next change arrives by notification.
                response = await client.post("/employees/", json=employee_payload(3002))
                assert (await stream.next(wait=5)).data["emp_id"] == 3002
        finally:
            await admin.close()
            await stream.close()


class TestServerProcesses:
    async def test_a_change_through_one_server_reaches_a_stream_on_another(
        self, database_url, tmp_path: Path
    ):
        settings = make_settings(database_url)
        admin_token = await make_account(settings, "stream.admin", "admin")
        reader_token = await make_account(settings, "stream.reader", "user")
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        with (
            serving(tmp_path / "a", database_url) as (writer, _),
            serving(tmp_path / "b", database_url) as (reader, _),
        ):
            async with (
                httpx.AsyncClient(base_url=reader, timeout=30) as client,
                client.stream(
                    "GET",
                    "/v1/employees/events",
                    headers={"Authorization": f"Bearer {reader_token}"},
                ) as response,
            ):
                assert response.status_code == 200
                frames = sse_events(response)
                async with httpx.AsyncClient(base_url=writer, timeout=30) as other:
                    made = await other.post(
                        "/v1/employees/",
                        json=employee_payload(3101),
                        headers={"Authorization": f"Bearer {admin_token}"},
                    )
                    assert made.status_code == 201
                frame = await next_event(frames)
                assert frame["event"] == "employee.created"
                assert json.loads(frame["data"])["emp_id"] == 3101


class TestShutdown:
    async def test_sigterm_ends_streams_at_once_with_a_reconnect_hint(
        self, database_url, tmp_path: Path
    ):
        settings = make_settings(database_url)
        token = await make_account(settings, "stream.reader", "user")
        env = {"SHUTDOWN_DRAIN_SECONDS": str(DRAIN_SECONDS), "STREAM_HEARTBEAT_SECONDS": "60"}
        with serving(tmp_path, database_url, **env) as (base, server):
            socket_url = base.replace("http://", "ws://") + "/v1/ws/employees"
            async with (
                httpx.AsyncClient(base_url=base, timeout=30) as client,
                client.stream(
                    "GET", "/v1/employees/events", headers={"Authorization": f"Bearer {token}"}
                ) as response,
                connect(socket_url) as socket,
            ):
                await socket.send(json.dumps({"type": "auth", "token": token}))
                assert json.loads(await socket.recv()) == {"type": "ready"}
                assert response.status_code == 200
                server.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                body = ""
                async with asyncio.timeout(5):
                    async for text in response.aiter_text():
                        body += text
                ended_after = time.monotonic() - signalled
                with pytest.raises(ConnectionClosed) as closed:
                    async with asyncio.timeout(5):
                        await socket.recv()
                exit_code = await asyncio.to_thread(server.wait, DRAIN_SECONDS)
                exited_after = time.monotonic() - signalled
        print(f"\nSIGTERM: SSE ended after {ended_after:.2f} s, exit after {exited_after:.2f} s")
        assert "retry: " in body
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        assert exit_code in (0, -signal.SIGTERM)
        assert exited_after < 5  # far from the drain time: nothing waited for the streams
        log = (tmp_path / "server.log").read_text()
        assert "Traceback" not in log, log


class TestLongStreams:
    async def test_a_stream_outlives_the_request_head_timeout(self, database_url, tmp_path: Path):
        settings = make_settings(database_url)
        token = await make_account(settings, "stream.reader", "user")
        env = {"HEADER_TIMEOUT_SECONDS": "0.5", "STREAM_HEARTBEAT_SECONDS": "0.2"}
        with serving(tmp_path, database_url, **env) as (base, _):
            async with (
                httpx.AsyncClient(base_url=base, timeout=30) as client,
                client.stream(
                    "GET", "/v1/employees/events", headers={"Authorization": f"Bearer {token}"}
                ) as response,
            ):
                beats = 0
                started = time.monotonic()
                async with asyncio.timeout(10):
                    async for fields in sse_events(response):
                        assert ":" in fields, fields  # heartbeats only, never a 408
                        beats += 1
                        if time.monotonic() - started > 2:
                            break
        assert beats >= 5
        assert "request head not complete" not in (tmp_path / "server.log").read_text()
