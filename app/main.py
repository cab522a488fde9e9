"""The ASGI application: `create_app(settings)`; `uvicorn app.main:app` builds it from the
environment when uvicorn asks for `app`, as `uvicorn --factory app.main:create_app` does.
"""

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from app.accounts.bootstrap import start_first_admin
from app.accounts.history.router import router as user_history_router
from app.accounts.keys.router import router as api_keys_router
from app.accounts.router import auth_router, password_router
from app.accounts.users_router import router as users_router
from app.changes.router import router as changes_router
from app.changes.streams import sse_router, start_streams, ws_router
from app.core.config import Settings, get_settings
from app.core.errors import install_error_handlers
from app.core.logging import configure_logging
from app.core.tasks import stop_tasks
from app.db.engine import Database
from app.db.replica import open_replica
from app.employees.counting import estimate_cache
from app.employees.csv.router import router as employees_csv_router
from app.employees.history.router import router as history_router
from app.employees.router import router as employees_router
from app.health.router import router as health_router
from app.http.docs import DOCS_PATHS, install_docs
from app.http.openapi import OPENAPI_TAGS, document_body_errors, document_rate_limits
from app.http.rate_limits import RequestLimiter
from app.http.routing import install_method_handler
from app.http.versioning import include_versioned
from app.middleware.access_log import AccessLogMiddleware
from app.middleware.body_limit import BodyLimitMiddleware
from app.middleware.compression import CompressionMiddleware
from app.middleware.cors import cors_options
from app.middleware.cut_off import CutOffMiddleware
from app.middleware.rate_limit import RateLimitMiddleware, is_exempt
from app.middleware.replica_writes import ReplicaWriteMiddleware
from app.middleware.request_id import RequestIdMiddleware
from app.middleware.security_headers import SecurityHeadersMiddleware
from app.middleware.sessions import SessionCloser
from app.middleware.trusted_hosts import TrustedHosts
from app.observability.metrics import (
    keep_live_gauges,
    mark_worker_stopped,
    several_workers,
    track_pool,
)
from app.observability.router import router as metrics_router
from app.observability.tracing import configure_tracing, requested_exporter, shutdown_tracing
from app.security.api_keys import KeyMemory
from app.security.oidc import OidcVerifier
from app.security.passwords import configure_hash_concurrency
from app.webhooks.router import router as webhooks_router
from app.webhooks.worker import start_webhook_worker

DESCRIPTION = """
Employee records over REST. Sign in with a username and password at `POST /v1/auth/token` (OAuth2
password flow) and send the token as `Authorization: Bearer <token>`; on the Swagger UI page,
`/docs`, the **Authorize** button does both. Any account can read; only administrators can
create, change or delete records. Programs use an API key instead (`erk_...`, made at
`POST /v1/users/me/api-keys`), sent the same way: it may do what its scopes name and its
owner's role allows, on the employee operations only.

This is version 1 of the API, under `/v1`. The same operations also answer at the root paths
(`/employees/`, `/auth/token`, ...) for the clients written before versioning: the same version,
with the same answers. The health probes are not versioned: they live at `/health/*` only.
"""


def lifespan(
    settings: Settings,
    database: Database | None,
    limiter: RequestLimiter | None,
    oidc: OidcVerifier | None,
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        # Here, not at import: each uvicorn worker process runs its own lifespan.
        configure_logging(settings)
        tracer_provider = configure_tracing()  # only when OTEL_* variables ask for it
        configure_hash_concurrency(
            settings.password_hash_concurrency, nice=settings.password_hash_nice
        )
        db = database or Database.from_settings(settings)
        track_pool(db.engine)
        app.state.database = db
        replica = app.state.replica = open_replica(settings, db)
        if replica is not None:
            track_pool(replica.database.engine)
        # The service starts while the database is down: /health/ready says 503 until it answers.
        admin_task = await start_first_admin(settings, db.sessions)
        replica_task = replica.start() if replica is not None else None
        if oidc is not None:
            oidc.start()  # the identity provider's keys, fetched in the background
        streams = app.state.streams = start_streams(settings, db, oidc)
        app.state.announce_changes = streams.announce  # after each request that wrote changes
        # Fans changes out to webhooks and sends them, woken by the streams' notifications.
        webhook_task = start_webhook_worker(settings, db, streams.on_change)
        tasks = [
            task
            for task in (admin_task, start_live_gauges(), replica_task, webhook_task)
            if task is not None
        ]
        freeze_startup_objects()
        try:
            yield
        finally:
            await streams.aclose()  # before the engine goes
            await stop_tasks(*tasks)
            if replica is not None:
                await replica.aclose()
            if oidc is not None:
                await oidc.aclose()
            if database is None:  # a database handed in belongs to whoever made it
                await db.engine.dispose()
            if limiter is not None:
                await limiter.aclose()
            mark_worker_stopped()
            await asyncio.to_thread(shutdown_tracing, tracer_provider)

    return run


def start_live_gauges() -> asyncio.Task[None] | None:
    """With several workers, each writes its live gauges once a second (a scrape reads all)."""
    return asyncio.create_task(keep_live_gauges()) if several_workers() else None


_frozen = False


def freeze_startup_objects() -> None:
    """Move what start-up built (modules, routes, the app) out of the collector's sight: it lives
    as long as the worker, and every full collection would walk it again (a pause under load).
    Once per process (a flag: counting the frozen objects walks them all)."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


def middleware(
    settings: Settings,
    limiter: RequestLimiter | None,
    oidc: OidcVerifier | None = None,
    keys: KeyMemory | None = None,
) -> list[Middleware]:
    """Outermost first. Every answer, a refused Host, an oversized body or a spent request
    limit included, carries the request id, the security headers and `Vary: Accept-Encoding`
    and is logged; a 429 gets the CORS headers too (preflights are not counted); the sessions
    close innermost, once the answer is out, and a request cut off at shutdown gets the layers'
    headers on its 503. With a read replica, a write's WAL position is noted before its answer
    leaves (read your writes)."""
    stack = [Middleware(RequestIdMiddleware)]
    if settings.access_log or settings.metrics_enabled:
        stack.append(
            Middleware(
                AccessLogMiddleware,
                access_log=settings.access_log,
                metrics=settings.metrics_enabled,
            )
        )
    if settings.compression_enabled:
        # Inside the access log, which then sees what goes on the wire; outside the rest, so
        # that every answer they make, a 500 included, gets its Vary and may be compressed.
        stack.append(Middleware(CompressionMiddleware, min_bytes=settings.compression_min_bytes))
    stack.append(Middleware(SecurityHeadersMiddleware, docs_paths=DOCS_PATHS))
    if "*" not in settings.trusted_hosts:
        stack.append(Middleware(TrustedHosts, allowed_hosts=settings.trusted_hosts))
    stack.append(Middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes))
    if settings.cors_origins:
        stack.append(Middleware(CORSMiddleware, **cors_options(settings.cors_origins)))
    if limiter is not None:
        stack.append(
            Middleware(
                RateLimitMiddleware, settings=settings, limiter=limiter, oidc=oidc, keys=keys
            )
        )
    stack.append(Middleware(CutOffMiddleware))
    if settings.database_read_url is not None:
        stack.append(Middleware(ReplicaWriteMiddleware))
    stack.append(Middleware(SessionCloser))
    return stack


def request_limiter(settings: Settings) -> RequestLimiter | None:
    if not settings.rate_limit_enabled:
        return None
    return RequestLimiter(
        redis_url=settings.redis_url,
        key_prefix=settings.redis_key_prefix,
        fail_open=settings.rate_limit_fail_open,
    )


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> FastAPI:
    """The application for these settings (default: the environment's). A `database` handed
    in is used instead of one built from the settings, and left open at shutdown."""
    settings = settings or get_settings()
    limiter = request_limiter(settings)
    oidc = OidcVerifier.from_settings(settings)  # single sign-on, when OIDC_ISSUER is set
    keys = KeyMemory()
    app = FastAPI(
        title="Employee Records API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan(settings, database, limiter, oidc),
        middleware=middleware(settings, limiter, oidc, keys),
        swagger_ui_parameters={"persistAuthorization": True},
        openapi_tags=OPENAPI_TAGS,
        # app.http.docs serves both pages with their assets from the service, not from a CDN.
        docs_url=None,
        redoc_url=None,
        # Decided once, by the OTEL_* variables, not asked of OpenTelemetry on every request.
        telemetry={"tracing": requested_exporter() is not None, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.api_keys = keys
    app.state.count_estimates = estimate_cache()
    app.state.replica = None  # the lifespan opens the read replica, if there is one
    app.state.oidc = oidc
    install_error_handlers(app)
    install_method_handler(app)
    document_body_errors(app)
    if limiter is not None:
        document_rate_limits(app, counted=lambda path: not is_exempt(path))
    install_docs(app)
    # Matched in order: the employee records, most of the traffic, first. Each router answers
    # at the root and under /v1 (app.http.versioning); the probes and metrics are operational,
    # called by load balancers and scrapers, and stay unversioned at the root.
    include_versioned(
        app,
        (
            changes_router,  # its literal paths before the records' /employees/{emp_id}
            sse_router,  # /employees/events, likewise
            employees_router,
            employees_csv_router,
            history_router,
            auth_router,
            users_router,
            user_history_router,
            password_router,
            api_keys_router,
            webhooks_router,
            ws_router,
        ),
    )
    app.include_router(health_router)
    app.include_router(metrics_router)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    return app


def __getattr__(name: str) -> Any:
    """`app`: built from the environment's settings the first time it is asked for."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    built = globals()["app"] = create_app()
    return built
