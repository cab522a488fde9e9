"""The ASGI application: `uvicorn app.main:app`."""

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from app.audit.router import router as audit_router
from app.auth.router import password_router
from app.auth.router import router as auth_router
from app.core.bootstrap import start_first_admin
from app.core.config import get_settings
from app.core.db import (
    SessionCloser,
    create_engine,
    create_read_sessionmaker,
    create_sessionmaker,
)
from app.core.errors import install_error_handlers
from app.core.logging import configure_logging
from app.core.openapi import document_body_errors
from app.core.security import configure_hash_concurrency
from app.core.sql import pooled_reads
from app.docs import install_docs
from app.employees.counting import estimate_cache
from app.employees.csv_router import router as employees_csv_router
from app.employees.router import router as employees_router
from app.health.router import router as health_router
from app.middleware import install_middleware
from app.middleware.cut_off import CutOffMiddleware
from app.observability.metrics import (
    keep_live_gauges,
    mark_worker_stopped,
    several_workers,
    track_pool,
)
from app.observability.router import router as metrics_router
from app.observability.tracing import configure_tracing, requested_exporter, shutdown_tracing
from app.users.router import router as users_router

logger = logging.getLogger("app")

DESCRIPTION = """
Employee records over REST. Sign in with **Authorize** (OAuth2 password flow): any account can
read, only administrators can create, change or delete records.
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Tests swap settings through dependency_overrides; start-up reads them the same way.
    settings = app.dependency_overrides.get(get_settings, get_settings)()
    # Here, not at import: each uvicorn worker process runs its own lifespan.
    configure_logging(settings)
    tracer_provider = configure_tracing()  # only when OTEL_* variables ask for it
    configure_hash_concurrency(settings.password_hash_concurrency, nice=settings.password_hash_nice)
    engine = create_engine(settings)
    track_pool(engine)
    app.state.sessionmaker = create_sessionmaker(engine)
    app.state.read_sessionmaker = create_read_sessionmaker(engine)
    app.state.pooled_reads = pooled_reads(engine)
    # The service starts while the database is down: /health/ready says 503 until it answers.
    admin_task = await start_first_admin(settings, app.state.sessionmaker)
    tasks = [task for task in (admin_task, start_live_gauges()) if task is not None]
    freeze_startup_objects()
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await engine.dispose()
        mark_worker_stopped()
        await asyncio.to_thread(shutdown_tracing, tracer_provider)


# The order of the sections in /docs: sign in first.
OPENAPI_TAGS = [
    {"name": "auth", "description": "Sign in, refresh, sign out; register an account."},
    {"name": "users", "description": "Your account; accounts and roles (administrators)."},
    {
        "name": "employees",
        "description": "Employee records: any signed-in user reads, "
        "administrators write. CSV export and import; the change history.",
    },
    {"name": "health", "description": "Liveness and readiness probes."},
]


def start_live_gauges() -> asyncio.Task[None] | None:
    """With several workers, each writes its live gauges once a second (a scrape reads all)."""
    return asyncio.create_task(keep_live_gauges()) if several_workers() else None


def freeze_startup_objects() -> None:
    """Move what start-up built (modules, routes, the app) out of the collector's sight.

    It lives as long as the worker, yet every full collection would walk it again: a pause of
    tens of milliseconds under load, straight into the tail latency. Once per process (later
    lifespans, as in tests, add nothing that must stay frozen).
    """
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


def create_app() -> FastAPI:
    app = FastAPI(
        title="Employee Records API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        swagger_ui_parameters={"persistAuthorization": True},
        openapi_tags=OPENAPI_TAGS,
        # app/docs.py serves both pages with their assets from the service, not from a CDN.
        docs_url=None,
        redoc_url=None,
        # FastAPI asks OpenTelemetry on every request whether a provider was installed since;
        # that costs more than a small request's routing. Tracing is decided once, here, by the
        # same OTEL_* variables `configure_tracing` reads; metrics are Prometheus' (/metrics).
        telemetry={"tracing": requested_exporter() is not None, "metrics": False, "logs": False},
    )
    # Per app, not per module: tests build an app per database.
    app.state.count_estimates = estimate_cache()
    install_error_handlers(app)
    document_body_errors(app)
    # Innermost: the sessions are closed once the answer is out, whatever the layers above do.
    app.add_middleware(SessionCloser)
    # Inside the others: the 503 of a request cut off at shutdown gets their headers and log line.
    app.add_middleware(CutOffMiddleware)
    install_middleware(app)
    install_docs(app)
    # Routes are matched in order: the employee records, most of the traffic, come first.
    # The CSV routes precede the others: /employees/export.csv is not an {emp_id}.
    app.include_router(employees_csv_router)
    app.include_router(employees_router)
    app.include_router(audit_router)
    app.include_router(auth_router)
    app.include_router(users_router)
    app.include_router(password_router)
    app.include_router(health_router)
    app.include_router(metrics_router)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    return app


app = create_app()
