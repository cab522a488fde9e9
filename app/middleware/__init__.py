"""Transport middleware: request id, trusted hosts, body size, security headers and CORS.

Settings are read at the first request, not when the app is built: `create_app()` runs at
import, and tests swap settings through `app.dependency_overrides[get_settings]` afterwards. Nor
when Starlette builds its middleware stack: that happens at the lifespan's start, and an error
there (a missing secret) would not stop the server; the lifespan reports it and uvicorn exits.
"""

from collections.abc import Callable

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.config import Settings, get_settings
from app.docs import DOCS_PATHS
from app.middleware.access_log import AccessLogMiddleware
from app.middleware.body_limit import BodyLimitMiddleware
from app.middleware.request_id import RequestIdMiddleware
from app.middleware.security_headers import SecurityHeadersMiddleware
from app.middleware.trusted_hosts import TrustedHosts

CORS_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
CORS_REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "If-Match",
    "If-None-Match",
    "Idempotency-Key",
    "X-Request-ID",
]
CORS_EXPOSED_HEADERS = [
    "X-Total-Count",
    "X-Total-Count-Estimated",
    "Link",
    "Location",
    "Retry-After",
    "ETag",
    "Idempotent-Replayed",
    "X-Request-ID",
]


class DeferredMiddleware:
    """Build the layers inside it from settings at the first request instead of at import."""

    def __init__(self, app: ASGIApp, *, build: Callable[[ASGIApp], ASGIApp]) -> None:
        self.app = app
        self.build = build
        self.built: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if self.built is None:
            self.built = self.build(self.app)
        await self.built(scope, receive, send)


def install_middleware(app: FastAPI) -> None:
    """Outermost first: request id, access log, security headers, trusted hosts, body limit, CORS.

    Security headers wrap everything so that the 400 for a bad Host and the 413 carry them too;
    they only touch the response, so nothing is read before the host and size checks.
    """

    def settings() -> Settings:
        return app.dependency_overrides.get(get_settings, get_settings)()

    def cors(inner: ASGIApp) -> ASGIApp:
        origins = settings().cors_origins
        if not origins:
            return inner
        # Bearer tokens travel in a header, not cookies, so credentials mode is not needed.
        return CORSMiddleware(
            inner,
            allow_origins=origins,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_EXPOSED_HEADERS,
        )

    def body_limit(inner: ASGIApp) -> ASGIApp:
        return BodyLimitMiddleware(inner, max_body_bytes=settings().max_body_bytes)

    def trusted_hosts(inner: ASGIApp) -> ASGIApp:
        hosts = settings().trusted_hosts
        if "*" in hosts:
            return inner
        return TrustedHosts(inner, allowed_hosts=hosts)

    def access_log(inner: ASGIApp) -> ASGIApp:
        current = settings()
        if not (current.access_log or current.metrics_enabled):
            return inner
        return AccessLogMiddleware(
            inner, access_log=current.access_log, metrics=current.metrics_enabled
        )

    def layers(inner: ASGIApp) -> ASGIApp:
        # Built inside out, in one deferred layer: a layer a setting switches off is not there
        # at all, rather than a pass-through on every request.
        for layer in (cors, body_limit, trusted_hosts):
            inner = layer(inner)
        # Inside the request id (its lines carry it), outside the rest (a 400 or 413 is counted).
        return access_log(SecurityHeadersMiddleware(inner, docs_paths=DOCS_PATHS))

    app.add_middleware(DeferredMiddleware, build=layers)
    # Outermost, so that every answer, a refused Host or an oversized body included, carries it.
    app.add_middleware(RequestIdMiddleware)
