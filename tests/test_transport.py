"""Transport: body size limit, security headers, CORS and trusted hosts."""

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts.models import User
from app.employees.models import Employee
from tests.conftest import USER_PASSWORD, employee_payload

LIMIT = 1_048_576
TOO_LARGE = {"detail": "Request body too large"}
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ALLOWED_ORIGIN = "https://hr.example.com"


def padded_json(size: int, **overrides: Any) -> bytes:
    """A valid employee body of exactly `size` bytes (whitespace after the object)."""
    body = json.dumps(employee_payload(**overrides)).encode()
    return body + b" " * (size - len(body))


def padded_form(size: int, username: str = "jane.doe") -> bytes:
    # Unknown form fields are ignored, so the padding keeps the sign-in valid.
    body = f"username={username}&password={USER_PASSWORD}&pad=".encode()
    return body + b"x" * (size - len(body))


async def employee_count(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return (await session.execute(select(func.count()).select_from(Employee))).scalar_one()


async def user_count(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return (await session.execute(select(func.count()).select_from(User))).scalar_one()


def client_of(app: Any, base_url: str = "http://test", **kwargs: Any) -> AsyncClient:
    return AsyncClient(transport=ASGITransport(app=app, **kwargs), base_url=base_url)


class TestBodyLimit:
    async def test_json_over_the_limit_gets_413_and_writes_nothing(
        self, admin_user_client, sessionmaker
    ):
        response = await admin_user_client.post(
            "/employees/", content=padded_json(LIMIT + 1), headers=JSON
        )
        assert response.status_code == 413
        assert response.json() == TOO_LARGE
        assert response.headers["connection"] == "close"
        assert await employee_count(sessionmaker) == 0

    async def test_json_exactly_at_the_limit_is_accepted(self, admin_user_client, sessionmaker):
        response = await admin_user_client.post(
            "/employees/", content=padded_json(LIMIT), headers=JSON
        )
        assert response.status_code == 201
        assert await employee_count(sessionmaker) == 1

    async def test_login_form_over_the_limit_gets_413(self, client, normal_user):
        response = await client.post("/auth/token", content=padded_form(LIMIT + 1), headers=FORM)
        assert response.status_code == 413
        assert response.json() == TOO_LARGE
        assert "access_token" not in response.text

    async def test_login_form_exactly_at_the_limit_is_not_413(self, client, normal_user):
        response = await client.post("/auth/token", content=padded_form(LIMIT), headers=FORM)
        assert response.status_code == 200
        assert "access_token" in response.json()

    async def test_register_over_the_limit_creates_no_account(self, client, sessionmaker):
        body = json.dumps({"username": "big.body", "password": "x" * (LIMIT + 1)})
        response = await client.post("/auth/register", content=body, headers=JSON)
        assert response.status_code == 413
        assert await user_count(sessionmaker) == 0

    async def test_chunked_body_is_cut_off_as_soon_as_it_crosses_the_limit(
        self, admin_user_client, sessionmaker
    ):
        chunk = b" " * 65_536
        sent = 0

        async def stream() -> AsyncIterator[bytes]:
            nonlocal sent
            yield json.dumps(employee_payload()).encode()
            for _ in range(4 * LIMIT // len(chunk)):
                sent += len(chunk)
                yield chunk

        response = await admin_user_client.post("/employees/", content=stream(), headers=JSON)
        assert response.status_code == 413
        assert response.json() == TOO_LARGE
        assert "content-length" not in response.request.headers
        # Reading stopped at the chunk that crossed the limit, not at the end of the stream.
        assert sent <= LIMIT + len(chunk)
        assert await employee_count(sessionmaker) == 0

    async def test_lying_content_length_does_not_bypass_the_limit(
        self, admin_user_client, sessionmaker
    ):
        response = await admin_user_client.post(
            "/employees/",
            content=padded_json(LIMIT + 1),
            headers=JSON | {"Content-Length": "100"},
        )
        assert response.request.headers["content-length"] == "100"
        assert response.status_code == 413
        assert response.json() == TOO_LARGE
        assert await employee_count(sessionmaker) == 0

    async def test_declared_length_over_the_limit_is_refused_before_reading(self, app):
        received: list[Any] = []
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            received.append(True)
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/employees/",
            "raw_path": b"/employees/",
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"host", b"test"),
                (b"content-type", b"application/json"),
                (b"content-length", str(10 * LIMIT).encode()),
            ],
            "client": ("127.0.0.1", 1234),
            "server": ("test", 80),
        }
        await app(scope, receive, send)

        assert received == []
        assert sent[0]["status"] == 413
        assert json.loads(sent[1]["body"]) == TOO_LARGE

    async def test_limit_follows_the_settings(self, app_with, admin_user, token_for):
        app = await app_with(max_body_bytes=4096)
        async with client_of(app) as client:
            client.headers["Authorization"] = f"Bearer {token_for(admin_user)}"
            response = await client.post("/employees/", content=padded_json(4097), headers=JSON)
            assert response.status_code == 413
            response = await client.post("/employees/", content=padded_json(4096), headers=JSON)
            assert response.status_code == 201


SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def assert_security_headers(response: Any) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


class TestSecurityHeaders:
    async def test_success_gets_the_strict_api_policy(self, normal_user_client):
        response = await normal_user_client.get("/employees/")
        assert response.status_code == 200
        assert_security_headers(response)
        assert response.headers["content-security-policy"] == (
            "default-src 'none'; frame-ancestors 'none'"
        )

    @pytest.mark.parametrize(
        ("path", "status"), [("/employees/", 401), ("/nowhere", 404), ("/employees/0", 401)]
    )
    async def test_error_answers_carry_them(self, client, path, status):
        response = await client.get(path)
        assert response.status_code == status
        assert_security_headers(response)

    async def test_validation_error_carries_them(self, normal_user_client):
        response = await normal_user_client.get("/employees/0")
        assert response.status_code == 422
        assert_security_headers(response)

    async def test_unhandled_error_500_carries_them(self, app):
        @app.get("/boom")
        async def boom() -> None:
            raise RuntimeError("boom")

        async with client_of(app, raise_app_exceptions=False) as client:
            response = await client.get("/boom")
        assert response.status_code == 500
        assert response.text == "Internal Server Error"
        assert_security_headers(response)

    async def test_413_carries_them(self, client):
        response = await client.post("/auth/register", content=b"x" * (LIMIT + 1), headers=JSON)
        assert response.status_code == 413
        assert_security_headers(response)

    async def test_token_answers_are_not_stored(self, client, normal_user):
        response = await client.post(
            "/auth/token", data={"username": "jane.doe", "password": USER_PASSWORD}
        )
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        response = await client.post("/auth/token", data={"username": "jane.doe"})
        assert response.status_code == 422
        assert response.headers["cache-control"] == "no-store"

    async def test_answers_to_credentialed_requests_are_not_stored(
        self, normal_user_client, client
    ):
        response = await normal_user_client.get("/employees/")
        assert response.headers["cache-control"] == "no-store"
        response = await normal_user_client.get("/employees/42")
        assert response.status_code == 404
        assert response.headers["cache-control"] == "no-store"
        response = await client.get("/openapi.json")
        assert "cache-control" not in response.headers

    async def test_hsts_only_over_https(self, app):
        async with client_of(app, base_url="https://api.example.com") as client:
            response = await client.get("/openapi.json")
        assert response.headers["strict-transport-security"] == (
            "max-age=31536000; includeSubDomains"
        )
        async with client_of(app) as client:
            response = await client.get("/openapi.json")
        assert "strict-transport-security" not in response.headers


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }


class TestCors:
    @pytest.fixture
    async def cors_app(self, app_with: Callable[..., Any]) -> Any:
        return await app_with(cors_origins=[ALLOWED_ORIGIN, "https://other.example.com"])

    async def test_preflight_from_an_allowed_origin(self, cors_app):
        async with client_of(cors_app) as client:
            response = await client.options("/employees/", headers=preflight(ALLOWED_ORIGIN))
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        assert "POST" in response.headers["access-control-allow-methods"]
        allowed = response.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed
        assert "access-control-allow-credentials" not in response.headers
        assert_security_headers(response)

    async def test_preflight_from_another_origin_is_refused(self, cors_app):
        async with client_of(cors_app) as client:
            response = await client.options(
                "/employees/", headers=preflight("https://evil.example.net")
            )
        assert response.status_code == 400
        assert "access-control-allow-origin" not in response.headers

    async def test_actual_request_exposes_the_paging_headers(
        self, cors_app, normal_user, token_for
    ):
        async with client_of(cors_app) as client:
            response = await client.get(
                "/employees/",
                headers={
                    "Origin": ALLOWED_ORIGIN,
                    "Authorization": f"Bearer {token_for(normal_user)}",
                },
            )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        exposed = response.headers["access-control-expose-headers"].lower()
        assert "x-total-count" in exposed and "link" in exposed

    async def test_actual_request_from_another_origin_gets_no_cors_headers(self, cors_app):
        async with client_of(cors_app) as client:
            response = await client.get("/openapi.json", headers={"Origin": "https://evil.test"})
        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers

    async def test_no_origins_configured_means_no_cors_headers(self, client, normal_user_client):
        response = await client.options("/employees/", headers=preflight(ALLOWED_ORIGIN))
        assert response.status_code == 405
        assert not [name for name in response.headers if name.startswith("access-control-")]
        response = await normal_user_client.get("/employees/", headers={"Origin": ALLOWED_ORIGIN})
        assert response.status_code == 200
        assert not [name for name in response.headers if name.startswith("access-control-")]


class TestTrustedHosts:
    async def test_listed_host_is_served(self, app_with):
        app = await app_with(trusted_hosts=["api.example.com"])
        async with client_of(app, base_url="http://api.example.com") as client:
            response = await client.get("/openapi.json")
        assert response.status_code == 200

    async def test_other_host_gets_400(self, app_with, sessionmaker):
        app = await app_with(trusted_hosts=["api.example.com"])
        async with client_of(app, base_url="http://evil.example.net") as client:
            response = await client.get("/openapi.json")
            assert response.status_code == 400
            assert response.json() == {"detail": "Invalid host header"}  # the API's error shape
            assert response.headers["content-type"] == "application/json"
            assert_security_headers(response)
            assert "x-request-id" in response.headers
            # Refused before the body limit or any parsing looks at the request.
            response = await client.post("/auth/register", content=b"x" * (LIMIT + 1), headers=JSON)
            assert response.status_code == 400
        assert await user_count(sessionmaker) == 0

    async def test_wildcard_subdomains_and_ports(self, app_with):
        app = await app_with(trusted_hosts=["*.example.com"])
        for host, expected in (
            ("api.example.com:8443", 200),
            ("API.Example.com", 200),
            ("example.com.evil.net", 400),
            ("", 400),
        ):
            async with client_of(app) as client:
                response = await client.get("/openapi.json", headers={"Host": host})
            assert response.status_code == expected, host

    async def test_any_host_by_default(self, client):
        response = await client.get("/openapi.json", headers={"Host": "whatever.example"})
        assert response.status_code == 200
