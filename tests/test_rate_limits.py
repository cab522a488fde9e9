"""Request limits for every caller: per account, per address, writes; the IETF header fields."""

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis
from httpx import ASGITransport, AsyncClient
from prometheus_client import REGISTRY
from pydantic import ValidationError
from sqlalchemy import event

from app.core.config import Settings
from app.http.rate_limits import MAX_BATCH, Policy, RequestLimiter
from tests.conftest import SECRET, employee_payload, make_settings
from tests.test_login_limits import (
    CLOSED_PORT_REDIS,
    REDIS_TEST_URL,
    migrated_sqlite,
    running_server,
)
from tests.test_startup import server_env

LIMITS = {
    "rate_limit_enabled": True,
    "rate_limit_authenticated": "8/minute",
    "rate_limit_anonymous": "4/minute",
    "rate_limit_writes": "3/minute",
}
TOO_MANY = {"detail": "Too many requests"}
FIELD = re.compile(r'^"(?P<name>[a-z]+)";r=(?P<r>\d+);t=(?P<t>\d+)$')


def auth_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def usage(response: httpx.Response) -> tuple[str, int, int]:
    """The policy, remaining requests and reset seconds the `RateLimit` field announces."""
    match = FIELD.match(response.headers["RateLimit"])
    assert match, response.headers["RateLimit"]
    return match["name"], int(match["r"]), int(match["t"])


def redis_available() -> bool:
    try:
        redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        return False
    return True


needs_redis = pytest.mark.skipif(
    not redis_available(), reason=f"no Redis at {REDIS_TEST_URL} (apt-get install redis-server)"
)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, **LIMITS)


@pytest.fixture
async def other_client(app: Any) -> AsyncIterator[AsyncClient]:
    """An anonymous caller from another address than `client` (127.0.0.1)."""
    transport = ASGITransport(app=app, client=("10.0.0.2", 123))
    async with AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


class TestHeaderFields:
    async def test_remaining_counts_down_per_account(self, normal_user_client):
        remaining = []
        for _ in range(3):
            response = await normal_user_client.get("/employees/")
            assert response.status_code == 200
            assert response.headers["RateLimit-Policy"] == '"authenticated";q=8;w=60'
            name, left, reset = usage(response)
            assert name == "authenticated"
            assert 1 <= reset <= 60
            remaining.append(left)
        assert remaining == [7, 6, 5]

    async def test_writes_name_the_policy_closest_to_running_out(
        self, admin_user_client, admin_user
    ):
        for expected in (2, 1, 0):
            response = await admin_user_client.patch(f"/users/{admin_user.id}", json={})
            assert response.status_code != 429
            assert response.headers["RateLimit-Policy"] == '"writes";q=3;w=60'
            assert usage(response)[:2] == ("writes", expected)
        # The reads' quota is not spent: 8 - 3 writes.
        response = await admin_user_client.get("/employees/")
        assert (response.status_code, usage(response)[:2]) == (200, ("authenticated", 4))

    async def test_health_metrics_and_docs_are_not_counted(self, client, normal_user_client):
        for path in ("/health/live", "/metrics", "/docs", "/redoc", "/openapi.json", "/"):
            for _ in range(5):
                response = await client.get(path, follow_redirects=False)
                assert response.status_code < 400, path
                assert "RateLimit" not in response.headers, path
        assert usage(await client.get("/employees/"))[:2] == ("anonymous", 3)

    async def test_probes_behind_a_proxy_prefix_are_not_counted(self, app):
        transport = ASGITransport(app=app, root_path="/api")
        async with AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(6):
                response = await client.get("/api/health/live")
                assert response.status_code == 200
                assert "RateLimit" not in response.headers
            response = await client.get("/api/v1/employees/")
            assert usage(response)[:2] == ("anonymous", 3)

    async def test_disabled_limits_send_no_fields(self, app_with, normal_user, token_for):
        app = await app_with(rate_limit_enabled=False)
        headers = auth_headers(token_for(normal_user))
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
            for _ in range(12):
                response = await client.get("/employees/", headers=headers)
                assert response.status_code == 200
                assert "RateLimit" not in response.headers


class TestLimits:
    async def test_a_spent_account_gets_429_with_retry_after(self, normal_user_client):
        for _ in range(8):
            assert (await normal_user_client.get("/employees/")).status_code == 200
        response = await normal_user_client.get("/employees/")
        assert (response.status_code, response.json()) == (429, TOO_MANY)
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert usage(response)[:2] == ("authenticated", 0)
        assert response.headers["X-Request-ID"]  # the outer layers still apply

    async def test_refusals_are_counted_by_policy(self, normal_user_client):
        def refused() -> float:
            value = REGISTRY.get_sample_value(
                "requests_rate_limited_total", {"policy": "authenticated"}
            )
            return value or 0.0

        before = refused()
        for _ in range(10):
            await normal_user_client.get("/employees/")
        assert refused() - before == 2

    async def test_writes_are_limited_on_their_own(self, admin_user_client):
        statuses = []
        for emp_id in range(1, 5):
            response = await admin_user_client.post(
                "/employees/", json=employee_payload(emp_id=emp_id)
            )
            statuses.append(response.status_code)
        assert statuses == [201, 201, 201, 429]
        assert (await admin_user_client.get("/employees/")).status_code == 200

    async def test_accounts_have_their_own_quota(self, normal_user_client, admin_user_client):
        for _ in range(9):
            await normal_user_client.get("/employees/")
        assert (await normal_user_client.get("/employees/")).status_code == 429
        response = await admin_user_client.get("/employees/")
        assert (response.status_code, usage(response)[1]) == (200, 7)

    async def test_anonymous_callers_are_limited_per_address(self, client, other_client):
        responses = [await client.get("/employees/") for _ in range(5)]
        assert [r.status_code for r in responses] == [401] * 4 + [429]
        assert [usage(r)[:2] for r in responses] == [("anonymous", n) for n in (3, 2, 1, 0, 0)]
        assert (await other_client.get("/employees/")).status_code == 401

    async def test_bad_tokens_count_against_the_address(
        self, client, other_client, normal_user, token_for
    ):
        forged = auth_headers(token_for(normal_user)[:-4] + "AAAA")
        statuses = [(await client.get("/employees/", headers=forged)).status_code for _ in range(6)]
        assert statuses == [401] * 4 + [429] * 2
        # The signed-in account itself is untouched, from the same address.
        response = await client.get("/employees/", headers=auth_headers(token_for(normal_user)))
        assert (response.status_code, usage(response)[1]) == (200, 7)
        assert (await other_client.get("/employees/", headers=forged)).status_code == 401

    async def test_a_spent_caller_costs_others_nothing(
        self, app, engine, normal_user_client, admin_user_client
    ):
        for _ in range(9):
            await normal_user_client.get("/employees/")
        statements: list[str] = []

        def record(*args: Any) -> None:
            statements.append(str(args[2]))

        event_target = engine.sync_engine
        event.listen(event_target, "before_cursor_execute", record)
        try:
            flood = [normal_user_client.get("/employees/") for _ in range(200)]
            refused = await asyncio.gather(*flood)
        finally:
            event.remove(event_target, "before_cursor_execute", record)
        assert {response.status_code for response in refused} == {429}
        assert statements == []  # refused before any route, session or query
        others = await asyncio.gather(*(admin_user_client.get("/employees/") for _ in range(7)))
        assert [response.status_code for response in others] == [200] * 7


def shared_limits(prefix: str, **overrides: str) -> dict[str, Any]:
    return LIMITS | {"redis_url": REDIS_TEST_URL, "redis_key_prefix": prefix} | overrides


@pytest.fixture
def prefix() -> Iterator[str]:
    """A Redis key prefix of this test's own, its keys deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    connection = redis.Redis.from_url(REDIS_TEST_URL)
    keys = list(connection.scan_iter(match=f"{name}:*"))
    if keys:
        connection.delete(*keys)
    connection.close()


@needs_redis
class TestSharedThroughRedis:
    async def test_two_apps_enforce_one_limit(self, app_with, normal_user, token_for, prefix):
        apps = [await app_with(**shared_limits(prefix)) for _ in range(2)]
        headers = auth_headers(token_for(normal_user))
        statuses = []
        for number in range(10):
            transport = ASGITransport(app=apps[number % 2])
            async with AsyncClient(transport=transport, base_url="http://t") as client:
                statuses.append((await client.get("/employees/", headers=headers)).status_code)
        assert statuses == [200] * 8 + [429] * 2

    async def test_unreachable_redis_fails_open(self, app_with, normal_user, token_for, caplog):
        app = await app_with(**shared_limits("unused", redis_url=CLOSED_PORT_REDIS))
        headers = auth_headers(token_for(normal_user))
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
            statuses = [
                (await client.get("/employees/", headers=headers)).status_code for _ in range(10)
            ]
        # This process still counts on its own; nothing is refused for want of Redis.
        assert statuses == [200] * 8 + [429] * 2
        assert "Redis unavailable" in caplog.text

    async def test_unreachable_redis_fails_closed_when_asked(
        self, app_with, normal_user, token_for
    ):
        app = await app_with(
            **shared_limits("unused", redis_url=CLOSED_PORT_REDIS), rate_limit_fail_open=False
        )
        headers = auth_headers(token_for(normal_user))
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
            response = await client.get("/employees/", headers=headers)
            assert response.status_code == 503
            assert response.json() == {"detail": "Request limits are unavailable; retry shortly"}
            assert int(response.headers["Retry-After"]) > 0
            assert (await client.get("/health/live")).status_code == 200

    def test_two_server_processes_enforce_one_limit(self, tmp_path, prefix):
        env = server_env(
            DATABASE_URL=migrated_sqlite(tmp_path),
            JWT_SECRET_KEY=SECRET,
            REDIS_URL=REDIS_TEST_URL,
            REDIS_KEY_PREFIX=prefix,
            RATE_LIMIT_ANONYMOUS="6/minute",
        )
        with (
            running_server(tmp_path, env, "a") as (first, _),
            running_server(tmp_path, env, "b") as (second, _),
        ):
            responses = [httpx.get(f"{base}/employees/") for base in (first, second) * 4]
        assert [r.status_code for r in responses] == [401] * 6 + [429] * 2
        assert [usage(r)[1] for r in responses] == [5, 4, 3, 2, 1, 0, 0, 0]


class TestLimiter:
    """The counting itself, on a clock the test moves."""

    @pytest.fixture
    def clock(self) -> list[float]:
        return [60.0 * 16_667 + 20]  # 20 s into a minute window

    async def test_a_new_window_starts_afresh(self, clock):
        limiter = RequestLimiter(redis_url=None, key_prefix="x", clock=lambda: clock[0])
        policy = Policy.parse("p", "2/minute")
        first = [await limiter.hit(policy, "k") for _ in range(3)]
        assert [(u.allowed, u.remaining, u.reset) for u in first] == [
            (True, 1, 40),
            (True, 0, 40),
            (False, 0, 40),
        ]
        clock[0] += 40
        assert (await limiter.hit(policy, "k")).remaining == 1
        assert len(limiter.counters) == 1  # the last window's counters are dropped

    def test_batches_are_a_hundredth_of_the_limit_within_bounds(self):
        assert [Policy.parse("p", f"{n}/minute").batch for n in (1, 99, 1200, 10**6)] == [
            1,
            1,
            12,
            MAX_BATCH,
        ]

    @needs_redis
    async def test_one_process_counting_in_batches_is_exact(self, prefix):
        policy = Policy.parse("p", "1000/minute")
        limiter = RequestLimiter(redis_url=REDIS_TEST_URL, key_prefix=prefix)
        try:
            usages = [await limiter.hit(policy, "k") for _ in range(1100)]
        finally:
            await limiter.aclose()
        assert sum(u.allowed for u in usages) == 1000
        assert [u.remaining for u in usages[:3]] == [999, 998, 997]
        shared = redis.Redis.from_url(REDIS_TEST_URL)
        (name,) = shared.scan_iter(match=f"{prefix}:requests:p:k:*")
        assert 0 < shared.ttl(name) <= 61
        shared.close()

    @needs_redis
    async def test_processes_overshoot_by_at_most_a_batch_less_one_each(self, prefix):
        policy = Policy.parse("p", "1000/minute")
        limiters = [RequestLimiter(redis_url=REDIS_TEST_URL, key_prefix=prefix) for _ in range(3)]
        try:
            admitted = 0
            for number in range(1500):
                usage = await limiters[number % 3].hit(policy, "k")
                admitted += usage.allowed
        finally:
            for limiter in limiters:
                await limiter.aclose()
        assert 1000 <= admitted <= 1000 + 3 * (policy.batch - 1)


class TestSchema:
    async def test_counted_operations_document_429_and_the_fields(self, app):
        schema = app.openapi()
        for path, path_item in schema["paths"].items():
            for method, operation in path_item.items():
                responses = operation["responses"]
                if path.startswith("/health/"):
                    assert "RateLimit" not in responses["200"].get("headers", {})
                    continue
                assert "Retry-After" in responses["429"]["headers"], (method, path)
                for code, response in responses.items():
                    assert {"RateLimit", "RateLimit-Policy"} <= set(response["headers"]), code

    async def test_disabled_limits_are_not_documented(self, app_with):
        app = await app_with(rate_limit_enabled=False)
        operation = app.openapi()["paths"]["/v1/employees/"]["get"]
        assert "429" not in operation["responses"]


class TestSettings:
    @pytest.mark.parametrize("value", ["abc", "0/minute", "5/minute;1/second", "-1/hour", ""])
    def test_a_limit_must_be_one_positive_quota(self, value):
        with pytest.raises(ValidationError, match="must be one limit such as 100/minute"):
            make_settings("sqlite+aiosqlite://", rate_limit_anonymous=value or " ")

    @pytest.mark.parametrize("value", ["", "   "])
    def test_a_blank_redis_url_means_none(self, value):
        # Counted in memory, not handed to Redis as a URL of spaces.
        assert make_settings("sqlite+aiosqlite://", redis_url=value).redis_url is None

    def test_the_notation_of_the_limits_library_is_taken(self):
        settings = make_settings("sqlite+aiosqlite://", rate_limit_writes="10 per 2 hours")
        assert Policy.parse("writes", settings.rate_limit_writes).window == 7200
