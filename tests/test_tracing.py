"""OpenTelemetry tracing: off unless the OTEL_* variables ask for it, then a span per request."""

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from alembic import command
from opentelemetry import metrics, trace

from app.observability.tracing import requested_exporter
from tests.conftest import SECRET
from tests.pg import alembic_config
from tests.test_startup import free_port, server_env, wait_until_up


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, "otlp"),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, None),
    ],
)
def test_tracing_is_switched_by_the_standard_variables(env, expected):
    assert requested_exporter(env) == expected


def test_a_server_with_the_console_exporter_writes_a_span_per_request(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'traced.db'}"
    command.upgrade(alembic_config(url), "head")
    port = free_port()
    env = server_env(
        DATABASE_URL=url,
        JWT_SECRET_KEY=SECRET,
        OTEL_TRACES_EXPORTER="console",
        OTEL_SERVICE_NAME="traced-api",
    )
    log = tmp_path / "server.log"
    command_line = [sys.executable, "-m", "app", "serve", "--port", str(port)]
    with log.open("wb") as output:
        server = subprocess.Popen(
            command_line, cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base, server, log)
        assert httpx.get(f"{base}/health/live").status_code == 200
        assert httpx.get(f"{base}/employees/7").status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=30)
    output_text = log.read_text()  # spans are flushed at shutdown
    assert output_text.count('"name": "GET /health/live"') == 1
    assert output_text.count('"name": "GET /employees/{emp_id}"') == 1
    # Both requests traced through FastAPI's handler: GET one's 401 comes from its claims
    # dependency, so it has a dependencies span (the read route's direct path has none).
    assert output_text.count('"name": "fastapi.dependencies"') == 2
    assert '"service.name": "traced-api"' in output_text


async def test_with_tracing_off_requests_do_not_consult_opentelemetry(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # FastAPI would otherwise ask for the global providers on every request, in case one was
    # installed since: a cost the size of a small request's routing, for nothing.
    asked: list[str] = []
    for module, name in ((trace, "get_tracer_provider"), (metrics, "get_meter_provider")):
        original = getattr(module, name)
        monkeypatch.setattr(
            module, name, lambda original=original, name=name: asked.append(name) or original()
        )

    assert (await client.get("/health/live")).status_code == 200
    assert (await client.get("/employees/7")).status_code == 401

    assert asked == []
