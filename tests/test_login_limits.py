"""Failed-login limits on POST /auth/token: per caller, per username, shared through Redis."""

import asyncio
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from alembic import command
from httpx import ASGITransport, AsyncClient
from sqlalchemy import func, select

import app.security.passwords as security
from app.accounts.models import RefreshToken
from app.accounts.ratelimit import KEY_PREFIX, username_key
from app.core.config import Settings
from tests.conftest import SECRET, USER_PASSWORD, make_settings
from tests.pg import alembic_config
from tests.test_startup import free_port, server_env, wait_until_up

LIMITED = {"detail": "Too many failed logins; retry later"}
FAILED = {"detail": "Incorrect username or password"}
WRONG = "wrong-password-guess"
REDIS_TEST_URL = "redis://127.0.0.1:6379/9"
CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"
SMALL_LIMITS = {"login_limit_per_client": "3/minute", "login_limit_per_username": "5/minute"}


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, **SMALL_LIMITS)


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every password verification (real or dummy) the server performs."""
    calls: list[str] = []
    original = security._verify_and_update

    def counting(password: str, hashed: str) -> tuple[bool, str | None]:
        calls.append(password)
        return original(password, hashed)

    monkeypatch.setattr(security, "_verify_and_update", counting)
    return calls


@pytest.fixture
async def other_client(app: Any) -> AsyncIterator[AsyncClient]:
    """A caller from another address than `client` (which is 127.0.0.1)."""
    transport = ASGITransport(app=app, client=("10.0.0.2", 123))
    async with AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def login(client: AsyncClient, username: str, password: str = WRONG) -> httpx.Response:
    return await client.post("/auth/token", data={"username": username, "password": password})


def assert_limited(response: httpx.Response, *, window: int = 60) -> None:
    assert response.status_code == 429
    assert response.json() == LIMITED
    assert 1 <= int(response.headers["Retry-After"]) <= window


async def refresh_tokens(session: Any) -> int:
    return int(await session.scalar(select(func.count()).select_from(RefreshToken)))


class TestPerClientLimit:
    async def test_failures_below_the_limit_answer_401(self, client, normal_user):
        for _ in range(3):
            response = await login(client, "jane.doe")
            assert (response.status_code, response.json()) == (401, FAILED)

    async def test_right_password_is_refused_once_the_limit_is_spent(
        self, client, normal_user, hashes, session
    ):
        for _ in range(3):
            assert (await login(client, "jane.doe")).status_code == 401
        hashes.clear()
        response = await login(client, "jane.doe", USER_PASSWORD)
        assert_limited(response)
        assert "access_token" not in response.text
        assert hashes == []  # refused before any argon2 work
        assert await refresh_tokens(session) == 0

    async def test_a_success_clears_the_callers_failures(self, client, normal_user):
        for _ in range(2):
            assert (await login(client, "jane.doe")).status_code == 401
        assert (await login(client, "jane.doe", USER_PASSWORD)).status_code == 200
        for _ in range(2):
            assert (await login(client, "jane.doe")).status_code == 401
        # Without the reset this would be the sixth attempt in the window: 429.
        assert (await login(client, "jane.doe", USER_PASSWORD)).status_code == 200

    async def test_case_variants_of_the_username_share_the_counter(self, client, normal_user):
        for variant in ("Jane.Doe", "JANE.DOE", "jane.DOE"):
            assert (await login(client, variant)).status_code == 401
        assert_limited(await login(client, "jane.doe", USER_PASSWORD))

    async def test_unknown_usernames_are_limited_the_same_way(self, client, normal_user, hashes):
        known = [await login(client, "jane.doe") for _ in range(4)]
        unknown = [await login(client, "nobody.here") for _ in range(4)]
        assert (
            [r.status_code for r in known] == [r.status_code for r in unknown] == [401] * 3 + [429]
        )
        assert known[-1].json() == unknown[-1].json() == LIMITED
        assert set(known[-1].headers) == set(unknown[-1].headers)
        assert len(hashes) == 6  # three real and three dummy verifications, none for the 429s

    async def test_other_usernames_from_the_same_address_are_not_limited(self, client, normal_user):
        for _ in range(3):
            await login(client, "someone.else")
        assert (await login(client, "jane.doe", USER_PASSWORD)).status_code == 200

    async def test_forged_forwarded_for_does_not_make_a_new_client(self, client, normal_user):
        for number in range(3):
            headers = {"X-Forwarded-For": f"198.51.100.{number}"}
            form = {"username": "jane.doe", "password": WRONG}
            assert (await client.post("/auth/token", data=form, headers=headers)).status_code == 401
        headers = {"X-Forwarded-For": "198.51.100.99"}
        form = {"username": "jane.doe", "password": USER_PASSWORD}
        assert_limited(await client.post("/auth/token", data=form, headers=headers))

    async def test_concurrent_guesses_cannot_slip_past_the_check(self, client, normal_user):
        responses = await asyncio.gather(*(login(client, "jane.doe") for _ in range(8)))
        assert sorted(r.status_code for r in responses) == [401] * 3 + [429] * 5


class TestPerUsernameLimit:
    async def test_another_address_is_limited_only_by_the_username_limit(
        self, client, other_client, normal_user, hashes
    ):
        for _ in range(3):
            assert (await login(client, "jane.doe")).status_code == 401
        assert_limited(await login(client, "jane.doe"))
        # 10.0.0.2 has its own per-client allowance, but only 2 of the 5 per-username failures.
        for _ in range(2):
            assert (await login(other_client, "JANE.doe")).status_code == 401
        hashes.clear()
        assert_limited(await login(other_client, "jane.doe", USER_PASSWORD))
        assert hashes == []

    async def test_limited_attempts_do_not_count_as_failures(
        self, client, other_client, normal_user
    ):
        for _ in range(3):
            await login(client, "jane.doe")
        for _ in range(5):
            assert_limited(await login(client, "jane.doe"))  # refused, so not counted
        assert (await login(other_client, "jane.doe")).status_code == 401
        assert (await login(other_client, "jane.doe", USER_PASSWORD)).status_code == 200

    async def test_each_application_starts_clean(self, client, normal_user, app_with):
        for _ in range(3):
            await login(client, "jane.doe")
        assert_limited(await login(client, "jane.doe"))
        fresh = await app_with()
        async with AsyncClient(transport=ASGITransport(app=fresh), base_url="http://t") as other:
            assert (await login(other, "jane.doe", USER_PASSWORD)).status_code == 200


class TestOpenAPI:
    async def test_login_documents_429(self, client):
        schema = (await client.get("/openapi.json")).json()
        responses = schema["paths"]["/v1/auth/token"]["post"]["responses"]
        assert "Retry-After" in responses["429"]["description"]


class TestLimiterStorageDownFailOpen:
    """REDIS_URL points at a closed port: never hang, never 500; by default, do not limit."""

    @pytest.fixture
    def settings(self, database_url: str) -> Settings:
        return make_settings(database_url, redis_url=CLOSED_PORT_REDIS, **SMALL_LIMITS)

    async def test_fail_open_lets_logins_through_unlimited(self, client, normal_user, caplog):
        caplog.set_level(logging.WARNING, logger="app.accounts.ratelimit")
        started = time.monotonic()
        for _ in range(5):
            response = await login(client, "jane.doe")
            assert (response.status_code, response.json()) == (401, FAILED)
        assert (await login(client, "jane.doe", USER_PASSWORD)).status_code == 200
        assert time.monotonic() - started < 2 + 6 * 0.2  # six argon2 checks on top
        assert "login limiter storage unavailable" in caplog.text


class TestLimiterStorageDownFailClosed:
    @pytest.fixture
    def settings(self, database_url: str) -> Settings:
        return make_settings(
            database_url, redis_url=CLOSED_PORT_REDIS, rate_limit_fail_open=False, **SMALL_LIMITS
        )

    async def test_fail_closed_answers_503(self, client, normal_user, hashes, session):
        started = time.monotonic()
        response = await login(client, "jane.doe", USER_PASSWORD)
        assert time.monotonic() - started < 2
        assert response.status_code == 503
        assert response.json() == {"detail": "Sign-in is unavailable; retry shortly."}
        assert response.headers["Retry-After"] == "5"
        assert hashes == []
        assert await refresh_tokens(session) == 0


def redis_or_skip() -> redis.Redis:
    connection = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=0.5)
    try:
        connection.ping()
    except redis.RedisError as error:
        pytest.skip(f"Redis does not answer at {REDIS_TEST_URL} ({type(error).__name__})")
    return connection


@pytest.fixture
def redis_username() -> Iterator[str]:
    """A username no other run shares; its counters are deleted afterwards."""
    connection = redis_or_skip()
    username = f"user.{uuid.uuid4().hex[:12]}"
    yield username
    pattern = f"{KEY_PREFIX}:*{username_key(username)}*"
    keys = list(connection.scan_iter(match=pattern))
    if keys:
        connection.delete(*keys)
    connection.close()


class TestSharedRedisCounters:
    @pytest.fixture
    def settings(self, database_url: str) -> Settings:
        return make_settings(database_url, redis_url=REDIS_TEST_URL, **SMALL_LIMITS)

    async def test_two_apps_share_one_count(self, client, make_user, redis_username, app_with):
        await make_user(redis_username)
        second = await app_with()  # another worker: its own limiter object, the same Redis
        transport = ASGITransport(app=second)
        async with AsyncClient(transport=transport, base_url="http://test") as other:
            assert (await login(client, redis_username)).status_code == 401
            assert (await login(other, redis_username)).status_code == 401
            assert (await login(client, redis_username)).status_code == 401
            assert_limited(await login(other, redis_username, USER_PASSWORD))
        connection = redis_or_skip()
        assert list(connection.scan_iter(match=f"{KEY_PREFIX}:*{username_key(redis_username)}*"))
        connection.close()


@contextmanager
def running_server(
    tmp_path: Path, env: dict[str, str], name: str = "server"
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`uvicorn app.main:app` on a free port; output goes to a file (a pipe would fill up)."""
    port = free_port()
    log = tmp_path / f"{name}.log"
    command_line = [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port)]
    with log.open("wb") as output:
        server = subprocess.Popen(
            [*command_line, "--host", "127.0.0.1", "--no-access-log"],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(base, server, log)
            yield base, server
        finally:
            server.terminate()
            server.wait(timeout=15)


def migrated_sqlite(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'served.db'}"
    command.upgrade(alembic_config(url), "head")
    return url


class TestAcrossServerProcesses:
    def test_limit_holds_across_two_servers(self, tmp_path, redis_username):
        env = server_env(
            DATABASE_URL=migrated_sqlite(tmp_path),
            JWT_SECRET_KEY=SECRET,
            FIRST_ADMIN_USERNAME=redis_username,
            FIRST_ADMIN_PASSWORD=USER_PASSWORD,
            REDIS_URL=REDIS_TEST_URL,
            LOGIN_LIMIT_PER_CLIENT="100/minute",
            LOGIN_LIMIT_PER_USERNAME="4/minute",
        )
        with (
            running_server(tmp_path, env, "a") as (first, _),
            running_server(tmp_path, env, "b") as (second, _),
        ):
            statuses = []
            for base in (first, second, first, second):
                response = httpx.post(
                    f"{base}/auth/token", data={"username": redis_username, "password": WRONG}
                )
                statuses.append(response.status_code)
            assert statuses == [401] * 4
            for base in (first, second):
                response = httpx.post(
                    f"{base}/auth/token",
                    data={"username": redis_username.upper(), "password": USER_PASSWORD},
                )
                assert_limited(response)
