"""Failures a client cannot cause are answered plainly: a lost database is a 503, not a 500."""

import time
from types import SimpleNamespace

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy.exc import DBAPIError

from app.db.session import SessionDep
from app.main import create_app
from tests.conftest import make_settings, mint_token, running


async def test_unreachable_database_gets_503_with_retry_after(normal_user):
    # Port 1 on loopback refuses at once, as a stopped PostgreSQL does.
    settings = make_settings("postgresql+asyncpg://postgres@127.0.0.1:1/gone", db_connect_timeout=2)
    app = create_app(settings)
    token = mint_token(normal_user, settings)
    headers = {"Authorization": f"Bearer {token}"}
    transport = ASGITransport(app)
    async with running(app), AsyncClient(transport=transport, base_url="http://t") as client:
        started = time.monotonic()
        response = await client.get("/employees/", headers=headers)
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    assert response.json() == {"detail": "The database is unavailable; retry shortly."}
    assert elapsed < 3


class ServerError(Exception):
    """What the driver raises for an error PostgreSQL reports, with its SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "status"),
    [
        ("57P03", 503),  # the database system is starting up (during a restart)
        ("57P01", 503),  # terminating connection due to administrator command
        ("53300", 503),  # too many connections
        ("08006", 503),  # connection failure
        ("42P01", 500),  # undefined table: a bug or a missing migration, not a retry
    ],
)
async def test_server_refusals_are_503_by_sqlstate(sqlstate, status):
    app = create_app()

    @app.get("/fails")
    async def fails() -> None:
        raise DBAPIError("SELECT 1", None, ServerError(sqlstate))

    transport = ASGITransport(app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/fails")
    assert response.status_code == status
    assert ("retry-after" in response.headers) is (status == 503)


class ClosesOnADroppedConnection:
    """A session whose closing rollback meets a connection the database ended (a restart)."""

    invalidated = False

    def __init__(self) -> None:
        self.info: dict[str, object] = {}  # a session's own notes (app.db.change_log)

    def in_transaction(self) -> bool:
        return True  # it holds a connection (only such sessions are closed)

    async def close(self) -> None:
        raise DBAPIError("ROLLBACK", None, ServerError("57P01"))

    async def invalidate(self) -> None:
        type(self).invalidated = True


async def test_connection_lost_after_the_answer_does_not_break_it():
    app = create_app()

    @app.get("/reads")
    async def reads(_: SessionDep) -> dict[str, str]:
        return {"read": "done"}

    app.state.database = SimpleNamespace(sessions=ClosesOnADroppedConnection)
    async with AsyncClient(transport=ASGITransport(app), base_url="http://t") as client:
        response = await client.get("/reads")
    assert (response.status_code, response.json()) == (200, {"read": "done"})
    assert ClosesOnADroppedConnection.invalidated  # the pool gets no broken connection back


async def test_unknown_route_and_method(normal_user_client):
    assert (await normal_user_client.get("/nowhere")).status_code == 404
    response = await normal_user_client.post("/users/me")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}
