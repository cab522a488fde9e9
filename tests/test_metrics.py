"""Prometheus metrics at GET /metrics, in one process and summed over several workers."""

import asyncio
import contextlib
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from alembic import command
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from app.db.engine import create_engine
from app.observability.metrics import (
    LIVE,
    keep_live_gauges,
    track_pool,
    write_live_gauges,
)
from tests.conftest import SECRET, make_settings
from tests.pg import alembic_config
from tests.test_startup import free_port, server_env, wait_until_up

IN_FLIGHT, POOL = "http_requests_in_progress", "db_pool_checked_out_connections"
EMPLOYEE_ROUTE = {"method": "GET", "route": "/employees/{emp_id}", "status": "200"}


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return float(found.value)
    return 0.0


def delta(before: str, after: str, name: str, **labels: str) -> float:
    return sample(after, name, **labels) - sample(before, name, **labels)


async def scrape(client: Any) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return str(response.text)


class TestRequestMetrics:
    async def test_requests_are_counted_by_route_template_and_status(
        self, client, normal_user, client_for, make_employees
    ):
        await make_employees({"emp_id": 1}, {"emp_id": 2})
        before = await scrape(client)
        async with client_for(normal_user) as signed_in:
            for emp_id in (1, 2, 1):
                assert (await signed_in.get(f"/employees/{emp_id}")).status_code == 200
            assert (await signed_in.get("/employees/999")).status_code == 404
        after = await scrape(client)
        assert delta(before, after, "http_requests_total", **EMPLOYEE_ROUTE) == 3
        histogram = "http_request_duration_seconds"
        assert delta(before, after, f"{histogram}_count", **EMPLOYEE_ROUTE) == 3
        assert delta(before, after, f"{histogram}_bucket", **EMPLOYEE_ROUTE, le="+Inf") == 3
        not_found = EMPLOYEE_ROUTE | {"status": "404"}
        assert delta(before, after, "http_requests_total", **not_found) == 1

    async def test_v1_requests_have_series_of_their_own(
        self, client, normal_user, client_for, make_employees
    ):
        await make_employees({"emp_id": 1})
        before = await scrape(client)
        async with client_for(normal_user) as signed_in:
            for path in ("/v1/employees/1", "/v1/employees/1", "/employees/1"):
                assert (await signed_in.get(path)).status_code == 200
            assert (await signed_in.get("/v1/health/live")).status_code == 404
        after = await scrape(client)
        v1 = EMPLOYEE_ROUTE | {"route": "/v1/employees/{emp_id}"}
        assert delta(before, after, "http_requests_total", **v1) == 2
        assert delta(before, after, "http_requests_total", **EMPLOYEE_ROUTE) == 1
        unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
        assert delta(before, after, "http_requests_total", **unmatched) == 1

    async def test_unknown_paths_share_one_series(self, client):
        before = await scrape(client)
        for path in ("/a", "/b/c", "/secret?token=x"):
            assert (await client.get(path)).status_code == 404
        after = await scrape(client)
        labels = {"method": "GET", "route": "<unmatched>", "status": "404"}
        assert delta(before, after, "http_requests_total", **labels) == 3
        assert "/b/c" not in after and "/secret" not in after

    async def test_schema_and_docs_assets_are_counted_by_route_and_mount(self, client):
        before = await scrape(client)
        for path in ("/openapi.json", "/docs/static/swagger-ui.css", "/docs/static/redoc.js"):
            await client.get(path)
        after = await scrape(client)
        schema = {"method": "GET", "route": "/openapi.json", "status": "200"}
        asset = {"method": "GET", "route": "/docs/static/{path}", "status": "200"}
        assert delta(before, after, "http_requests_total", **schema) == 1
        assert delta(before, after, "http_requests_total", **asset) == 1
        assert delta(before, after, "http_requests_total", **asset | {"status": "404"}) == 1
        unmatched = {"method": "GET", "route": "<unmatched>"}
        assert delta(before, after, "http_requests_total", **unmatched, status="200") == 0
        assert "swagger-ui.css" not in after and "redoc.js" not in after

    async def test_the_scrape_itself_is_in_flight(self, client):
        assert sample(await scrape(client), "http_requests_in_progress") == 1


class TestLoginMetrics:
    async def test_failures_and_rate_limit_rejections_are_counted(
        self, app, client, normal_user, settings
    ):
        limited = settings.model_copy(update={"login_limit_per_client": "2/minute"})
        app.state.settings = limited
        before = await scrape(client)
        form = {"username": normal_user.username, "password": "wrong-password-guess"}
        statuses = [(await client.post("/auth/token", data=form)).status_code for _ in range(3)]
        assert statuses == [401, 401, 429]
        after = await scrape(client)
        assert delta(before, after, "login_failures_total") == 2
        assert delta(before, after, "login_rate_limited_total", window="client") == 1


class TestPoolMetric:
    async def test_checked_out_connections_are_reported(self, client):
        engine = create_engine(make_settings("sqlite+aiosqlite://"))
        track_pool(engine)
        try:
            idle = sample(await scrape(client), "db_pool_checked_out_connections")
            async with engine.connect():
                busy = sample(await scrape(client), "db_pool_checked_out_connections")
            done = sample(await scrape(client), "db_pool_checked_out_connections")
        finally:
            await engine.dispose()
        assert (busy - idle, done - idle) == (1, 0)


class TestAccess:
    async def test_metrics_enabled_false_answers_404(self, app, client, settings):
        app.state.settings = settings.model_copy(update={"metrics_enabled": False})
        assert (await client.get("/metrics")).status_code == 404

    async def test_not_in_the_openapi_schema(self, client):
        assert "/metrics" not in (await client.get("/openapi.json")).json()["paths"]


def test_two_workers_report_the_sum_of_both(tmp_path: Path) -> None:
    """`python -m app serve --workers 2`: every scrape counts every worker's requests."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'metrics.db'}"
    command.upgrade(alembic_config(url), "head")
    port, requests = free_port(), 60
    # TMPDIR: the server's own PROMETHEUS_MULTIPROC_DIR is made (and removed) in tmp_path.
    env = server_env(DATABASE_URL=url, JWT_SECRET_KEY=SECRET, TMPDIR=str(tmp_path))
    log = tmp_path / "server.log"
    command_line = [sys.executable, "-m", "app", "serve", "--workers", "2", "--port", str(port)]
    with log.open("wb") as output:
        server = subprocess.Popen(
            command_line, cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base, server, log)
        assert list(tmp_path.glob("prometheus-*"))  # the shared directory exists

        def get(path: str) -> httpx.Response:
            # A new connection each time, so that both workers take requests.
            return httpx.get(f"{base}{path}", timeout=10)

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: get("/health/live").status_code, range(requests)))
        assert statuses == [200] * requests
        labels = {"method": "GET", "route": "/health/live", "status": "200"}
        with ThreadPoolExecutor(4) as pool:
            scrapes = list(pool.map(lambda _: get("/metrics").text, range(8)))
        assert [sample(text, "http_requests_total", **labels) for text in scrapes] == [requests] * 8
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert not list(tmp_path.glob("prometheus-*"))  # removed at exit
    lines = log.read_text()
    # The workers log through app/core/logging.py: JSON access lines, not uvicorn's own.
    assert '"path": "/health/live"' in lines and '"request_id": ' in lines
    assert '"GET /health/live HTTP/1.1" 200' not in lines
    assert '"trace_id"' not in lines  # no OTEL_* variables: no tracing


class TestLiveGauges:
    """The in-flight and pool gauges are written from `LIVE` when sampled, not on every change."""

    async def test_each_worker_writes_them_every_interval(self):
        # The values only this test gives them, then back: other tests share the process.
        saved = (LIVE.in_flight, LIVE.pool_checked_out)
        task = asyncio.create_task(keep_live_gauges(interval=0.01))
        try:
            LIVE.in_flight, LIVE.pool_checked_out = 5, 3
            await asyncio.sleep(0.1)
            written = tuple(REGISTRY.get_sample_value(name) for name in (IN_FLIGHT, POOL))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            LIVE.in_flight, LIVE.pool_checked_out = saved
            write_live_gauges()
        assert written == (5, 3)

    async def test_a_scrape_writes_them_first(self, client):
        saved = LIVE.pool_checked_out
        LIVE.pool_checked_out = saved + 7
        try:
            scraped = sample(await scrape(client), "db_pool_checked_out_connections")
        finally:
            LIVE.pool_checked_out = saved
        assert scraped == saved + 7
