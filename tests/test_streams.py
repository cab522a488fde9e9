"""Live streams in the app's process, on both backends: `GET /employees/events` (SSE) and
`/ws/employees` (WebSocket). Changes are made through the API; the notifier is the real one
(SQLite: the engine's events; PostgreSQL: LISTEN on the trigger's NOTIFY)."""

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from jose import jwt
from sqlalchemy.ext.asyncio import AsyncEngine

from app.changes.streams import ws as ws_module
from app.changes.streams.notify import LocalNotifier
from app.db.engine import create_engine
from app.models import metadata
from app.security import tokens
from tests.conftest import employee_payload, make_settings, mint_token
from tests.streams_client import WsClient, open_sse, open_ws

HEARTBEAT = 0.3
EVENTS = "/employees/events"


@pytest.fixture
async def engine(engine: AsyncEngine, backend: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """SQLite: a database file with a pool of connections, as served. The suite's in-memory
    database has one connection for all sessions, and a stream reading while a request writes
    would then share that request's transaction."""
    if backend != "sqlite":
        yield engine
        return
    own = create_engine(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'streams.db'}"))
    async with own.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield own
    await own.dispose()


@pytest.fixture
async def streams_app(app_with: Any) -> Any:
    return await app_with(stream_heartbeat_seconds=HEARTBEAT)


@pytest.fixture
async def reader_token(normal_user: Any, token_for: Any) -> str:
    return str(token_for(normal_user))


@pytest.fixture
async def admin(streams_app: Any, admin_user: Any) -> Any:
    async with admin_client(streams_app, admin_user) as client:
        yield client


def client_with(app: Any, token: str) -> AsyncClient:
    headers = {"Authorization": f"Bearer {token}"}
    return AsyncClient(transport=ASGITransport(app=app), base_url="http://test", headers=headers)


def admin_client(app: Any, admin_user: Any) -> AsyncClient:
    return client_with(app, mint_token(admin_user, app.state.settings))


async def listening(app: Any) -> None:
    """PostgreSQL: until the worker's LISTEN connection is up (SQLite: at once)."""
    app.state.streams.listen()  # as the first stream would
    connected = getattr(app.state.streams.notifier, "connected", None)
    if connected is not None:
        await asyncio.wait_for(connected.wait(), 10)


async def create(admin: Any, emp_id: int, **fields: Any) -> None:
    response = await admin.post("/employees/", json=employee_payload(emp_id, **fields))
    assert response.status_code == 201, response.text


class TestServerSentEvents:
    async def test_a_change_reaches_an_open_stream(self, streams_app, admin, reader_token):
        await listening(streams_app)
        stream = await open_sse(streams_app, EVENTS, reader_token)
        assert stream.status == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        await create(admin, 2001)
        frame = await stream.next()
        assert frame.fields["event"] == "employee.created"
        assert frame.data["event_id"] == frame.fields["id"]
        assert frame.data["emp_id"] == 2001
        assert frame.data["type"] == "employee.created"
        await stream.close()

    async def test_it_starts_now_not_from_the_beginning(self, streams_app, admin, reader_token):
        await listening(streams_app)
        earlier = await open_sse(streams_app, EVENTS, reader_token)
        await create(admin, 2001)
        # Served to a stream: no transaction still running holds it back (app.changes.crud).
        assert (await earlier.next()).data["emp_id"] == 2001
        await earlier.close()
        stream = await open_sse(streams_app, EVENTS, reader_token)
        await create(admin, 2002)
        assert (await stream.next()).data["emp_id"] == 2002
        await stream.close()

    @pytest.mark.parametrize("how", ["last-event-id", "after"])
    async def test_resume_loses_nothing_and_repeats_nothing(
        self, streams_app, admin, reader_token, how
    ):
        await listening(streams_app)
        stream = await open_sse(streams_app, EVENTS, reader_token)
        for emp_id in (2001, 2002):
            await create(admin, emp_id)
        first = await stream.events(2)
        await stream.close()
        for emp_id in (2003, 2004, 2005):  # while nobody listens
            await create(admin, emp_id)
        last_id = first[0].fields["id"]  # resume from the first: 2002 comes again, once
        if how == "after":
            resumed = await open_sse(streams_app, f"{EVENTS}?after={last_id}", reader_token)
        else:
            resumed = await open_sse(streams_app, EVENTS, reader_token, last_event_id=last_id)
        got = [frame.data["emp_id"] for frame in await resumed.events(4)]
        assert got == [2002, 2003, 2004, 2005]
        await create(admin, 2006)
        assert (await resumed.next()).data["emp_id"] == 2006
        await resumed.close()

    async def test_last_event_id_wins_over_after(self, streams_app, admin, reader_token):
        stream = await open_sse(streams_app, EVENTS, reader_token)
        await listening(streams_app)
        for emp_id in (2001, 2002):
            await create(admin, emp_id)
        first, _ = await stream.events(2)
        await stream.close()
        resumed = await open_sse(
            streams_app, f"{EVENTS}?after=bogus", reader_token, last_event_id=first.fields["id"]
        )
        assert (await resumed.next()).data["emp_id"] == 2002
        await resumed.close()

    async def test_heartbeat_comments(self, streams_app, reader_token):
        stream = await open_sse(streams_app, EVENTS, reader_token)
        started = time.monotonic()
        beats = [await stream.next(events_only=False) for _ in range(2)]
        assert all(frame.comments == ["keep-alive"] and not frame.fields for frame in beats)
        assert time.monotonic() - started < HEARTBEAT * 4
        await stream.close()

    @pytest.mark.parametrize(
        ("path", "headers"),
        [
            (f"{EVENTS}?after=not-an-event-id", {}),
            (EVENTS, {"last_event_id": "%%%"}),
            (f"{EVENTS}?after=" + "a" * 300, {}),
        ],
    )
    async def test_a_malformed_position_is_422_before_the_stream_opens(
        self, streams_app, reader_token, path, headers
    ):
        stream = await open_sse(streams_app, path, reader_token, **headers)
        await stream.ended()
        assert stream.status == 422
        assert stream.headers["content-type"] == "application/json"

    @pytest.mark.parametrize("token", [None, "not-a-token", "erk_" + "x" * 54])
    async def test_401_without_good_credentials(self, streams_app, token):
        stream = await open_sse(streams_app, EVENTS, token)
        await stream.ended()
        assert stream.status == 401

    async def test_one_stream_too_many_for_an_account_is_429(self, app_with, reader_token):
        app = await app_with(stream_heartbeat_seconds=HEARTBEAT, stream_max_per_account=2)
        open_ones = [await open_sse(app, EVENTS, reader_token) for _ in range(2)]
        refused = await open_sse(app, EVENTS, reader_token)
        await refused.ended()
        assert refused.status == 429
        assert int(refused.headers["retry-after"]) >= 1
        await open_ones[0].close()
        again = await open_sse(app, EVENTS, reader_token)
        assert again.status == 200
        for stream in (open_ones[1], again):
            await stream.close()

    async def test_the_worker_limit_is_429_too(
        self, app_with, reader_token, auditor_user, token_for
    ):
        app = await app_with(stream_heartbeat_seconds=HEARTBEAT, stream_max_per_worker=1)
        first = await open_sse(app, EVENTS, reader_token)
        refused = await open_sse(app, EVENTS, token_for(auditor_user))
        await refused.ended()
        assert refused.status == 429
        await first.close()

    async def test_a_slow_consumer_is_disconnected_and_resumes_without_loss(
        self, app_with, admin_user, reader_token
    ):
        app = await app_with(stream_heartbeat_seconds=HEARTBEAT, stream_buffer_events=2)
        admin = admin_client(app, admin_user)
        await listening(app)
        stream = await open_sse(app, EVENTS, reader_token)
        await create(admin, 2001)
        seen = await stream.next()
        stream.stall()  # the client reads no more: the app's next send hangs
        for emp_id in range(2002, 2008):
            await create(admin, emp_id)
        await stream.ended(wait=HEARTBEAT * 10)
        assert app.state.streams.registry.total == 0
        resumed = await open_sse(app, EVENTS, reader_token, last_event_id=seen.fields["id"])
        got = [frame.data["emp_id"] for frame in await resumed.events(6)]
        assert got == list(range(2002, 2008))
        await resumed.close()
        await admin.aclose()

    async def test_a_client_catching_up_on_a_long_backlog_is_not_too_slow(
        self, app_with, admin_user, reader_token
    ):
        app = await app_with(stream_heartbeat_seconds=HEARTBEAT, stream_buffer_events=2)
        admin = admin_client(app, admin_user)
        stream = await open_sse(app, EVENTS, reader_token)
        await create(admin, 2001)
        first = await stream.next()
        await stream.close()
        for emp_id in range(2002, 2012):
            await create(admin, emp_id)
        resumed = await open_sse(app, EVENTS, reader_token, last_event_id=first.fields["id"])
        got = [frame.data["emp_id"] for frame in await resumed.events(10)]
        assert got == list(range(2002, 2012))
        await resumed.close()
        await admin.aclose()

    async def test_the_stream_ends_with_a_reconnect_hint_when_the_app_stops(
        self, app_with, reader_token
    ):
        app = await app_with(stream_heartbeat_seconds=60)
        stream = await open_sse(app, EVENTS, reader_token)
        started = time.monotonic()
        app.state.streams.stop()
        await stream.ended(wait=2)
        assert time.monotonic() - started < 1
        assert "retry: " in stream.body.decode()
        assert stream.complete


class TestCredentialsEnd:
    """Every stream ends within a heartbeat of its credentials ending."""

    async def wait_for_end(self, stream: Any) -> None:
        started = time.monotonic()
        await stream.ended(wait=HEARTBEAT * 4)
        assert time.monotonic() - started <= HEARTBEAT * 3

    async def test_sign_out_everywhere(self, streams_app, normal_user, token_for, admin):
        token = token_for(normal_user)
        stream = await open_sse(streams_app, EVENTS, token)
        async with client_with(streams_app, token) as own:
            assert (await own.post("/auth/logout-all")).status_code in (200, 204)
        await self.wait_for_end(stream)

    @pytest.mark.parametrize("how", ["deactivate", "delete"])
    async def test_deactivation_and_deletion(self, streams_app, normal_user, token_for, admin, how):
        stream = await open_sse(streams_app, EVENTS, token_for(normal_user))
        if how == "deactivate":
            response = await admin.patch(f"/users/{normal_user.id}", json={"is_active": False})
        else:
            response = await admin.delete(f"/users/{normal_user.id}")
        assert response.status_code in (200, 204), response.text
        await self.wait_for_end(stream)

    async def test_expiry(self, streams_app, normal_user, monkeypatch):
        monkeypatch.setattr(tokens, "CLOCK_SKEW", tokens.timedelta(0))
        settings = streams_app.state.settings
        now = int(time.time())
        claims = {
            "iss": settings.jwt_issuer,
            "aud": settings.jwt_audience,
            "sub": str(normal_user.id),
            "iat": now,
            "exp": now + 3,
            "jti": "expiring",
            "type": "access",
            "ver": normal_user.token_version,
            "sid": str(normal_user.id),
        }
        token = jwt.encode(claims, settings.jwt_secret_key.get_secret_value(), "HS256")
        stream = await open_sse(streams_app, EVENTS, token)
        assert stream.status == 200
        await stream.ended(wait=4 + HEARTBEAT * 3)

    async def test_websocket_closes_4401(self, streams_app, normal_user, token_for, admin):
        socket = await open_ws(streams_app, token_for(normal_user))
        await admin.patch(f"/users/{normal_user.id}", json={"is_active": False})
        assert await socket.close_code(wait=HEARTBEAT * 4) == 4401
        await socket.leave()


class TestWebSocket:
    async def test_auth_then_ready_then_events(self, streams_app, admin, reader_token):
        await listening(streams_app)
        socket = await open_ws(streams_app, reader_token)
        await create(admin, 2001)
        message = await socket.message()
        assert message["type"] == "event"
        assert message["event"]["emp_id"] == 2001
        assert message["event"]["type"] == "employee.created"
        await socket.leave()

    async def test_after_resumes_without_loss_or_repeat(self, streams_app, admin, reader_token):
        await listening(streams_app)
        socket = await open_ws(streams_app, reader_token)
        await create(admin, 2001)
        first = (await socket.message())["event"]
        await socket.leave()
        for emp_id in (2002, 2003):
            await create(admin, emp_id)
        resumed = await open_ws(streams_app, reader_token, after=first["event_id"])
        got = [(await resumed.message())["event"]["emp_id"] for _ in range(2)]
        assert got == [2002, 2003]
        await resumed.leave()

    async def test_no_auth_message_in_time_is_4408(self, streams_app, monkeypatch):
        monkeypatch.setattr(ws_module, "AUTH_SECONDS", 0.2)
        socket = WsClient(streams_app)
        assert await socket.close_code() == 4408

    @pytest.mark.parametrize(
        ("message", "code"),
        [
            ({"type": "auth", "token": "not-a-token"}, 4401),
            ({"type": "auth", "token": "erk_" + "x" * 54}, 4401),
            ({"type": "hello"}, 4400),
            ("not json", 4400),
        ],
    )
    async def test_bad_first_messages(self, streams_app, message, code):
        socket = WsClient(streams_app)
        socket.send(message)
        assert await socket.close_code() == code

    async def test_a_malformed_after_is_4422(self, streams_app, reader_token):
        socket = WsClient(streams_app)
        socket.send({"type": "auth", "token": reader_token, "after": "nope"})
        assert await socket.close_code() == 4422

    async def test_one_too_many_for_an_account_is_1008(self, app_with, reader_token):
        app = await app_with(stream_heartbeat_seconds=HEARTBEAT, stream_max_per_account=1)
        first = await open_ws(app, reader_token)
        second = WsClient(app)
        second.send({"type": "auth", "token": reader_token})
        assert await second.close_code() == 1008
        await first.leave()

    async def test_stop_closes_1012(self, app_with, reader_token):
        app = await app_with(stream_heartbeat_seconds=60)
        socket = await open_ws(app, reader_token)
        app.state.streams.stop()
        assert await socket.close_code(wait=2) == 1012


class TestCompression:
    @pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
    async def test_the_stream_is_never_compressed(self, streams_app, admin, reader_token, coding):
        await listening(streams_app)
        stream = await open_sse(streams_app, EVENTS, reader_token, accept_encoding=coding)
        assert "content-encoding" not in stream.headers
        await create(admin, 2001)
        assert (await stream.next()).data["emp_id"] == 2001
        await stream.close()


class TestWithoutListen:
    async def test_transaction_pooling_without_a_direct_url_still_streams(
        self, backend, app_with, admin_user, reader_token
    ):
        if backend == "sqlite":
            pytest.skip("PostgreSQL settings")
        app = await app_with(
            stream_heartbeat_seconds=HEARTBEAT,
            database_pool_mode="transaction",
            database_direct_url=None,
        )
        assert isinstance(app.state.streams.notifier, LocalNotifier)
        stream = await open_sse(app, EVENTS, reader_token)
        async with admin_client(app, admin_user) as admin:
            await create(admin, 2001)
        assert (await stream.next()).data["emp_id"] == 2001
        await stream.close()
