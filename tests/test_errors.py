"""Failures a client cannot cause are answered plainly: a lost database is a 503, not a 500."""

import time

from httpx import ASGITransport, AsyncClient

from app.core.config import get_settings
from app.core.db import create_engine, create_sessionmaker
from app.core.tokens import create_access_token
from app.main import create_app
from tests.conftest import make_settings


async def test_unreachable_database_gets_503_with_retry_after(normal_user):
    # Port 1 on loopback refuses at once, as a stopped PostgreSQL does.
    settings = make_settings("postgresql+asyncpg://postgres@127.0.0.1:1/gone", db_connect_timeout=2)
    engine = create_engine(settings)
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings
    app.state.sessionmaker = create_sessionmaker(engine)
    token = create_access_token(normal_user.id, settings).token
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with AsyncClient(transport=ASGITransport(app), base_url="http://t") as client:
            started = time.monotonic()
            response = await client.get("/employees/", headers=headers)
            elapsed = time.monotonic() - started
    finally:
        await engine.dispose()
    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    assert response.json() == {"detail": "The database is unavailable; retry shortly."}
    assert elapsed < 3


async def test_unknown_route_and_method(normal_user_client):
    assert (await normal_user_client.get("/nowhere")).status_code == 404
    response = await normal_user_client.post("/users/me")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}
