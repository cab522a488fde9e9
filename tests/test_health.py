"""GET /health/live (process up) and GET /health/ready (database answers, migrations at head)."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from httpx import ASGITransport, AsyncClient

from app.health.checks import migration_heads
from app.main import create_app
from tests.conftest import make_settings, running
from tests.pg import PostgresServer, alembic_config

READY = {"status": "ready", "checks": {"database": "ok", "migrations": "ok"}}
BEHIND = {
    "detail": "The database schema is not at the head revision; run `alembic upgrade head`.",
    "status": "not_ready",
    "checks": {"database": "ok", "migrations": "not_at_head"},
}
UNREACHABLE = {
    "detail": "The database does not answer; retry shortly.",
    "status": "not_ready",
    "checks": {"database": "unreachable", "migrations": "unknown"},
}
# Port 1 on loopback refuses at once, as a stopped PostgreSQL does.
GONE_URL = "postgresql+asyncpg://postgres@127.0.0.1:1/gone"


@asynccontextmanager
async def client_on(url: str, **overrides: Any) -> AsyncIterator[AsyncClient]:
    """An app on `url`, its database built by its lifespan."""
    app = create_app(make_settings(url, **overrides))
    async with running(app), AsyncClient(transport=ASGITransport(app), base_url="http://t") as c:
        yield c


@pytest.fixture
async def database_at(backend: str, database_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    """A database migrated to head, or one revision short: a file on SQLite, a copy on PG."""

    async def at(revision: str) -> str:
        url = database_url
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'health.db'}"
            await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
        # (the private PostgreSQL copy comes migrated to head)
        if revision != "head":
            await asyncio.to_thread(command.downgrade, alembic_config(url), revision)
        return url

    yield at


@pytest.fixture
async def empty_database_url(
    backend: str, postgres_server: PostgresServer | None
) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield "sqlite+aiosqlite://"
        return
    assert postgres_server is not None
    name = await postgres_server.create_database()
    yield postgres_server.url_for(name)
    await postgres_server.drop_database(name)


class TestLiveness:
    async def test_live_answers_without_the_database(self):
        async with client_on(GONE_URL) as client:
            response = await client.get("/health/live")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        assert response.headers["x-content-type-options"] == "nosniff"


class TestReadiness:
    async def test_ready_when_migrations_are_at_head(self, database_at):
        async with client_on(await database_at("head")) as client:
            response = await client.get("/health/ready")
        assert response.status_code == 200
        assert response.json() == READY

    async def test_not_ready_when_a_migration_is_missing(self, database_at):
        assert len(migration_heads()) == 1
        async with client_on(await database_at("-1")) as client:
            response = await client.get("/health/ready")
        assert response.status_code == 503
        assert response.headers["retry-after"].isdigit()
        assert response.json() == BEHIND

    async def test_not_ready_when_never_migrated(self, empty_database_url):
        async with client_on(empty_database_url) as client:
            response = await client.get("/health/ready")
        assert response.status_code == 503
        assert response.json() == BEHIND

    async def test_not_ready_at_once_when_the_database_refuses(self):
        async with client_on(GONE_URL) as client:
            started = time.monotonic()
            response = await client.get("/health/ready")
            elapsed = time.monotonic() - started
        assert response.status_code == 503
        assert response.headers["retry-after"].isdigit()
        assert response.json() == UNREACHABLE
        assert elapsed < 2

    async def test_probes_need_no_token_and_pass_the_host_check(self, database_at):
        url = await database_at("head")
        async with client_on(url, trusted_hosts=["api.example.com"]) as client:
            headers = {"Host": "api.example.com"}
            live = await client.get("/health/live", headers=headers)
            ready = await client.get("/health/ready", headers=headers)
        assert (live.status_code, ready.status_code) == (200, 200)


def test_probes_are_documented():
    schema = create_app().openapi()
    live = schema["paths"]["/health/live"]["get"]
    ready = schema["paths"]["/health/ready"]["get"]
    assert (live["operationId"], ready["operationId"]) == ("read_liveness", "read_readiness")
    assert live["tags"] == ready["tags"] == ["health"]
    assert "503" in ready["responses"] and "security" not in ready
