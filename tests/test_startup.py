"""Start-up: configuration is checked, the first admin appears exactly once, no table is made."""

import asyncio
import gc
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from alembic import command
from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import create_async_engine

import app.main
from app.accounts.models import User
from app.core.config import ConfigurationError, Settings, get_settings
from app.db.engine import create_engine, create_sessionmaker
from app.main import create_app, freeze_startup_objects
from app.security.passwords import password_context
from tests.conftest import SECRET, employee_payload, make_settings
from tests.pg import ROOT, alembic_config

ADMIN = {"first_admin_username": "boss", "first_admin_password": "first-admin-password"}


class TestSettings:
    @pytest.mark.parametrize(
        ("given", "expected"),
        [
            ("postgresql://u:p@db:5432/hr", "postgresql+asyncpg://u:p@db:5432/hr"),
            ("postgres://u:p@db/hr", "postgresql+asyncpg://u:p@db/hr"),
            ("postgresql+asyncpg://u@db/hr", "postgresql+asyncpg://u@db/hr"),
            ("sqlite:///./employees.db", "sqlite+aiosqlite:///./employees.db"),
        ],
    )
    def test_database_urls_are_normalised(self, given, expected):
        assert make_settings(given).database_url == expected

    @pytest.mark.parametrize(
        "url", ["mysql://u@db/hr", "postgresql+psycopg2://u@db/hr", "nonsense"]
    )
    def test_unsupported_database_url_is_refused(self, url):
        with pytest.raises(ValueError, match="postgresql:// or sqlite://"):
            make_settings(url)

    def test_defaults(self, monkeypatch, tmp_path):
        monkeypatch.chdir(tmp_path)  # no .env here
        monkeypatch.delenv("DATABASE_URL")
        settings = Settings()  # type: ignore[call-arg]
        assert settings.jwt_algorithm == "HS256"
        assert settings.access_token_expire_minutes == 30
        assert settings.database_url.startswith("sqlite+aiosqlite:///")
        assert settings.database_url.endswith("/employees.db")
        assert settings.first_admin_username is None and settings.sql_echo is False

    def test_dotenv_file_is_read_and_blank_values_mean_unset(self, monkeypatch, tmp_path):
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("JWT_SECRET_KEY")
        (tmp_path / ".env").write_text(
            f"JWT_SECRET_KEY={SECRET}\nFIRST_ADMIN_USERNAME=admin\nFIRST_ADMIN_PASSWORD=\n"
            "ACCESS_TOKEN_EXPIRE_MINUTES=5\n"
        )
        settings = Settings()  # type: ignore[call-arg]
        assert settings.access_token_expire_minutes == 5
        assert settings.first_admin_password is None

    def test_missing_secret_is_refused_with_a_clear_message(self, monkeypatch, tmp_path):
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("JWT_SECRET_KEY")
        get_settings.cache_clear()
        try:
            with pytest.raises(ConfigurationError, match="JWT_SECRET_KEY: is required"):
                get_settings()
        finally:
            get_settings.cache_clear()

    @pytest.mark.parametrize(
        "secret",
        ["short-secret", "x" * 31, "replace-with-a-long-random-string-of-at-least-32-characters"],
    )
    def test_weak_secret_is_refused_without_echoing_it(self, monkeypatch, tmp_path, secret):
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("JWT_SECRET_KEY", secret)
        get_settings.cache_clear()
        try:
            with pytest.raises(ConfigurationError, match="JWT_SECRET_KEY") as caught:
                get_settings()
        finally:
            get_settings.cache_clear()
        assert secret not in str(caught.value)

    @pytest.mark.parametrize("algorithm", ["none", "RS256", "hs256"])
    def test_only_hmac_algorithms_are_accepted(self, algorithm):
        with pytest.raises(ValueError, match="jwt_algorithm"):
            make_settings("sqlite://", jwt_algorithm=algorithm)

    def test_secret_is_not_shown_in_repr(self):
        assert SECRET not in repr(make_settings("sqlite://"))


@pytest.fixture
async def migrated_url(backend: str, database_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """A database with the schema applied: the template copy on PostgreSQL, a file on SQLite."""
    if backend == "sqlite":
        database_url = f"sqlite+aiosqlite:///{tmp_path / 'startup.db'}"
        await asyncio.to_thread(command.upgrade, alembic_config(database_url), "head")
    yield database_url


async def users_in(url: str) -> list[User]:
    engine = create_engine(make_settings(url))
    try:
        async with create_sessionmaker(engine)() as session:
            return list((await session.execute(select(User))).scalars())
    finally:
        await engine.dispose()


async def start_and_stop(settings: Settings) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        pass


class TestFirstAdmin:
    async def test_racing_workers_create_exactly_one_admin(self, migrated_url):
        settings = make_settings(migrated_url, **ADMIN)
        await asyncio.gather(*(start_and_stop(settings) for _ in range(4)))
        (admin,) = await users_in(migrated_url)
        assert (admin.username, admin.is_admin, admin.is_active) == ("boss", True, True)
        assert password_context.verify(ADMIN["first_admin_password"], admin.hashed_password)

    async def test_existing_account_is_left_alone(self, migrated_url):
        await start_and_stop(make_settings(migrated_url, **ADMIN))
        (before,) = await users_in(migrated_url)
        changed = ADMIN | {"first_admin_username": "BOSS", "first_admin_password": "another-one!"}
        await start_and_stop(make_settings(migrated_url, **changed))
        (after,) = await users_in(migrated_url)
        assert after.hashed_password == before.hashed_password

    async def test_no_account_without_a_password(self, migrated_url):
        await start_and_stop(make_settings(migrated_url, first_admin_username="boss"))
        assert await users_in(migrated_url) == []


class TestSchemaOwnership:
    async def test_start_up_creates_no_tables(self, tmp_path):
        url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        await start_and_stop(make_settings(url))
        engine = create_async_engine(url)
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: inspect(c).get_table_names())
        await engine.dispose()
        assert tables == []

    async def test_unmigrated_database_starts_and_creates_the_admin_once_migrated(
        self, tmp_path, caplog
    ):
        url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        app = create_app(make_settings(url, **ADMIN))
        async with app.router.lifespan_context(app):
            await asyncio.sleep(1.5)  # the background retry fails at least once more meanwhile
            await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
            deadline = time.monotonic() + 5
            while not await users_in(url):
                assert time.monotonic() < deadline, "the first admin was not created"
                await asyncio.sleep(0.1)
        (admin,) = await users_in(url)
        assert (admin.username, admin.is_admin) == ("boss", True)
        advice = [r for r in caplog.records if "alembic upgrade head" in r.getMessage()]
        assert len(advice) == 1, advice  # once, not per retry

    async def test_shutdown_cancels_the_retry(self, tmp_path):
        url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        before = asyncio.all_tasks()
        started = time.monotonic()
        async with asyncio.timeout(3):
            await start_and_stop(make_settings(url, **ADMIN))
        assert time.monotonic() - started < 1  # not a wait for the next attempt, or forever
        assert asyncio.all_tasks() == before


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(**values: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
    return keep | {"PYTHONPATH": str(ROOT)} | values


def uvicorn(
    port: int, cwd: Path, env: dict[str, str], workers: int = 1, *, target: str = "app.main:app"
) -> subprocess.Popen[bytes]:
    """Start a server whose output goes to `cwd/server.log`."""
    command_line = [
        sys.executable,
        "-m",
        "uvicorn",
        *target.split(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    with (cwd / "server.log").open("wb") as log:
        return subprocess.Popen(
            command_line, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT
        )


def wait_until_up(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert server.poll() is None, log.read_text()
        try:
            if httpx.get(f"{base}/openapi.json", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server did not come up in 30 s"
        time.sleep(0.1)


class TestServerProcess:
    """uvicorn configured by environment variables alone, as in a container: `app.main:app`, or
    `create_app` as a factory."""

    @pytest.mark.parametrize(
        "target", ["app.main:app", "--factory app.main:create_app"], ids=["app", "factory"]
    )
    def test_two_workers_serve_login_and_employees(self, tmp_path, target):
        url = f"sqlite+aiosqlite:///{tmp_path / 'served.db'}"
        command.upgrade(alembic_config(url), "head")
        port = free_port()
        env = server_env(
            DATABASE_URL=url.replace("sqlite+aiosqlite", "sqlite"),
            JWT_SECRET_KEY=SECRET,
            FIRST_ADMIN_USERNAME="boss",
            FIRST_ADMIN_PASSWORD=ADMIN["first_admin_password"],
        )
        server = uvicorn(port, tmp_path, env, workers=2, target=target)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_up(base, server, tmp_path / "server.log")
            login = httpx.post(
                f"{base}/auth/token",
                data={"username": "BOSS", "password": ADMIN["first_admin_password"]},
            )
            assert login.status_code == 200
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            created = httpx.post(f"{base}/employees/", json=employee_payload(), headers=headers)
            assert created.status_code == 201
            listed = httpx.get(f"{base}/employees", headers=headers)
            assert listed.status_code == 200
            assert [row["emp_id"] for row in listed.json()] == [1001]
        finally:
            server.terminate()
            server.wait(timeout=15)
        assert len(asyncio.run(users_in(url))) == 1

    def test_refuses_to_start_without_a_secret(self, tmp_path):
        env = server_env(DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}")
        server = uvicorn(free_port(), tmp_path, env)
        assert server.wait(timeout=30) != 0
        assert "JWT_SECRET_KEY: is required" in (tmp_path / "server.log").read_text()


def test_start_up_freezes_the_long_lived_objects_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gc, "collect", lambda: 0)  # a full pass over the test process's heap
    monkeypatch.setattr(app.main, "_frozen", False)  # as in a new process
    was_frozen = gc.get_freeze_count()
    gc.unfreeze()
    try:
        freeze_startup_objects()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        later = [[] for _ in range(1000)]  # what a later lifespan (a test's app) would add

        freeze_startup_objects()

        assert gc.get_freeze_count() == frozen
        assert later
    finally:
        gc.unfreeze()
        if was_frozen:
            gc.freeze()
