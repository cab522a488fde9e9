"""One access-log line and the request metrics per request: the route template, never the raw
path (query strings can carry tokens), and the user id the auth dependency found.
"""

import logging
import time

from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.versioning import route_path, version_prefix
from app.observability.metrics import LIVE, UNMATCHED_ROUTE, observe_request

logger = logging.getLogger("app.access")


def route_template(scope: Scope) -> str:
    # path_format: the template without its parameters' convertors (`{emp_id}`).
    route = scope.get("route") or _route_of_endpoint(scope)
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(path, str):
        return UNMATCHED_ROUTE
    # FastAPI puts the route as its router declared it in the scope, without the prefix it was
    # included under: /v1 requests keep theirs, so the root paths' remaining callers show.
    prefix = version_prefix(route_path(scope))
    return path if path.startswith(prefix) else prefix + path


def _route_of_endpoint(scope: Scope) -> BaseRoute | None:
    """The plain route or mount that answered: FastAPI puts only its own operations in
    scope["route"], so /openapi.json and the docs assets (a mount: `/docs/static/{path}`)
    leave just the endpoint they handed the request to. A request no route took has none."""
    endpoint = scope.get("endpoint")
    if endpoint is None:
        return None
    for route in getattr(scope.get("router"), "routes", ()):
        if isinstance(route, Route) and route.endpoint is endpoint:
            return route
        if isinstance(route, Mount) and route.app is endpoint:
            return route
    return None


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp, *, access_log: bool, metrics: bool) -> None:
        self.app = app
        self.access_log = access_log
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets when the app raises before answering
        start = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        if self.metrics:
            LIVE.in_flight += 1
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            seconds = time.perf_counter() - start
            route = route_template(scope)
            if self.metrics:
                LIVE.in_flight -= 1
                observe_request(scope["method"], route, status, seconds)
            if self.access_log and logger.isEnabledFor(logging.INFO):
                self._log(scope, route, status, seconds)

    @staticmethod
    def _log(scope: Scope, route: str, status: int, seconds: float) -> None:
        fields = {
            "method": scope["method"],
            "path": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
            "user_id": None,
        }
        user_id = scope.get("state", {}).get("user_id")
        if user_id is not None:
            fields["user_id"] = str(user_id)
        logger.info("request", extra=fields)
