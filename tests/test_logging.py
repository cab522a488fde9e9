"""Structured logs: one access line per request, the request id on every line, no secrets."""

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient

from app.core import logging as app_logging
from app.core.config import Settings
from tests.conftest import USER_PASSWORD, make_settings

LogReader = Callable[[], list[dict[str, Any]]]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def configure(settings: Settings, app: Any) -> Iterator[Callable[..., io.StringIO]]:
    """Configure logging as the lifespan does, into a buffer; undone afterwards (after the test
    app's own lifespan has configured it)."""
    root = logging.getLogger()
    level = root.level
    # The test client's own request lines (full URLs) are not the service's log.
    test_client = logging.getLogger("httpx")
    test_client.setLevel(logging.WARNING)

    def configure(stream: io.StringIO | None = None, **overrides: Any) -> io.StringIO:
        stream = io.StringIO() if stream is None else stream
        current = make_settings(settings.database_url, **overrides)
        app_logging.configure_logging(current, stream=stream)
        return stream

    yield configure
    for handler in [h for h in root.handlers if isinstance(h, app_logging._AppHandler)]:
        root.removeHandler(handler)
    root.setLevel(level)
    test_client.setLevel(logging.NOTSET)
    logging.getLogger("uvicorn.access").disabled = False


@pytest.fixture
def json_log(configure: Callable[..., io.StringIO]) -> LogReader:
    stream = configure(log_format="json", log_level="info")
    return lambda: [json.loads(line) for line in stream.getvalue().splitlines()]


def access_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["logger"] == "app.access"]


class TestAccessLine:
    async def test_has_route_template_status_duration_user_and_request_id(
        self, json_log, normal_user, client_for, make_employees
    ):
        await make_employees({"emp_id": 4242})
        async with client_for(normal_user) as client:
            response = await client.get("/employees/4242", headers={"X-Request-ID": "trace-1"})
        assert response.status_code == 200
        (line,) = access_lines(json_log())
        assert line["event"] == "request" and line["level"] == "info"
        assert (line["method"], line["path"], line["status"]) == ("GET", "/employees/{emp_id}", 200)
        assert line["user_id"] == str(normal_user.id)
        assert line["request_id"] == "trace-1"
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
        assert "timestamp" in line

    async def test_a_v1_request_is_logged_with_its_prefix(
        self, json_log, normal_user, client_for, make_employees
    ):
        await make_employees({"emp_id": 4242})
        async with client_for(normal_user) as client:
            for path in ("/v1/employees/4242", "/v1/employees", "/employees/4242"):
                assert (await client.get(path)).status_code == 200
        lines = access_lines(json_log())
        assert [line["path"] for line in lines] == [
            "/v1/employees/{emp_id}",
            "/v1/employees",
            "/employees/{emp_id}",
        ]
        assert all(line["user_id"] == str(normal_user.id) for line in lines)

    async def test_anonymous_and_unmatched_requests_are_logged_without_the_raw_path(
        self, json_log, client
    ):
        response = await client.get("/no/such/page?q=private")
        assert response.status_code == 404
        (line,) = access_lines(json_log())
        assert (line["path"], line["status"], line["user_id"]) == ("<unmatched>", 404, None)
        assert line["request_id"] == response.headers["X-Request-ID"]
        assert "private" not in json.dumps(line)

    async def test_schema_and_docs_assets_are_logged_by_their_route_or_mount(
        self, json_log, client
    ):
        # /openapi.json is a plain route and the assets a mount: neither is a FastAPI operation.
        for path in ("/openapi.json", "/docs/static/swagger-ui.css", "/docs/static/nope.js"):
            await client.get(path)
        lines = access_lines(json_log())
        assert [(line["path"], line["status"]) for line in lines] == [
            ("/openapi.json", 200),
            ("/docs/static/{path}", 200),
            ("/docs/static/{path}", 404),
        ]
        assert "swagger-ui.css" not in json.dumps(lines) and "nope" not in json.dumps(lines)

    async def test_refused_before_routing_is_logged_too(self, configure, app, client, settings):
        stream = configure(log_format="json")
        response = await client.post("/employees/", content=b"x" * (settings.max_body_bytes + 1))
        assert response.status_code == 413
        (line,) = access_lines([json.loads(x) for x in stream.getvalue().splitlines()])
        assert line["status"] == 413

    async def test_access_log_false_writes_no_access_line(self, configure, app_with):
        quiet = await app_with(access_log=False)
        stream = configure(log_format="json")
        async with AsyncClient(transport=ASGITransport(quiet), base_url="http://t") as client:
            assert (await client.get("/health/live")).status_code == 200
        assert access_lines([json.loads(x) for x in stream.getvalue().splitlines()]) == []


class TestEveryLine:
    async def test_lines_logged_inside_a_request_carry_its_id(self, json_log, app, client):
        @app.get("/test-only/log")
        async def log_something() -> dict[str, str]:
            logging.getLogger("app.example").warning("inside %s", "the handler")
            return {}

        response = await client.get("/test-only/log", headers={"X-Request-ID": "abc-123"})
        assert response.status_code == 200
        inside = [line for line in json_log() if line["logger"] == "app.example"]
        assert inside == [
            inside[0] | {"event": "inside the handler", "level": "warning", "request_id": "abc-123"}
        ]

    def test_uvicorn_lines_use_the_same_renderer(self, json_log):
        logging.getLogger("uvicorn.error").info("Application startup complete.")
        (line,) = json_log()
        assert line["logger"] == "uvicorn.error"
        assert line["event"] == "Application startup complete."
        assert "request_id" not in line  # not inside a request

    async def test_console_format_is_one_readable_line(self, configure, client):
        stream = configure(log_format="console")
        await client.get("/health/live")
        (line,) = stream.getvalue().splitlines()
        assert "request" in line and "/health/live" in line and "status" in line
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)

    async def test_console_lines_have_no_colour_codes_unless_on_a_terminal(
        self, configure, client, monkeypatch
    ):
        monkeypatch.delenv("NO_COLOR", raising=False)
        redirected = configure(log_format="console")  # `make run > server.log`
        await client.get("/health/live")
        assert "/health/live" in redirected.getvalue()
        assert "\x1b[" not in redirected.getvalue()

    @pytest.mark.parametrize(("no_color", "coloured"), [(None, True), ("1", False)])
    async def test_a_terminal_gets_colours_unless_no_color_is_set(
        self, configure, client, monkeypatch, no_color, coloured
    ):
        if no_color is None:
            monkeypatch.delenv("NO_COLOR", raising=False)
        else:
            monkeypatch.setenv("NO_COLOR", no_color)
        terminal = Terminal()
        configure(log_format="console", stream=terminal)
        await client.get("/health/live")
        assert "/health/live" in terminal.getvalue()
        assert ("\x1b[" in terminal.getvalue()) is coloured

    def test_level_is_honoured(self, configure):
        stream = configure(log_format="json", log_level="warning")
        logging.getLogger("app.example").info("hidden")
        logging.getLogger("app.example").warning("shown")
        assert [json.loads(x)["event"] for x in stream.getvalue().splitlines()] == ["shown"]


class TestNoSecrets:
    async def test_passwords_tokens_and_query_strings_never_reach_the_log(
        self, configure, client, normal_user
    ):
        stream = configure(log_format="json", log_level="debug")
        login = await client.post(
            "/auth/token", data={"username": normal_user.username, "password": USER_PASSWORD}
        )
        assert login.status_code == 200
        access, refresh = login.json()["access_token"], login.json()["refresh_token"]
        bearer = {"Authorization": f"Bearer {access}"}
        assert (await client.get("/users/me", headers=bearer)).status_code == 200
        assert (await client.get(f"/users/me?token={access}")).status_code == 401
        assert (await client.post("/auth/refresh", json={"refresh_token": refresh})).is_success
        wrong = await client.post(
            "/auth/token", data={"username": normal_user.username, "password": "wrong-Secret-9"}
        )
        assert wrong.status_code == 401

        output = stream.getvalue()
        assert len(access_lines([json.loads(x) for x in output.splitlines()])) == 5
        for secret in (USER_PASSWORD, "wrong-Secret-9", access, refresh, "token="):
            assert secret not in output
