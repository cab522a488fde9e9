"""Security headers on every HTTP response, errors and documentation pages included."""

import itertools
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.versioning import route_path, unversioned
from app.middleware.headers import HeaderSet, encoded

# The API serves JSON only: nothing it returns should load anything or be framed.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# Swagger UI and ReDoc pages set their own policy (app/docs.py: same origin, inline script by
# hash); this one covers their other answers (assets, errors), which load nothing.
DOCS_CSP = "default-src 'none'; frame-ancestors 'none'"
HSTS = "max-age=31536000; includeSubDomains"
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class SecurityHeadersMiddleware:
    """The headers of this module on every response; `Cache-Control: no-store` on /auth (and
    /v1/auth) and on answers to credentialed requests; HSTS over https only (docs/security.md)."""

    def __init__(self, app: ASGIApp, *, docs_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.docs_paths = tuple(docs_paths)
        # Every combination, encoded once: (docs page, no-store, https).
        self.header_sets = {
            case: header_set(*case) for case in itertools.product((False, True), repeat=3)
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = self._headers_for(scope)
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                headers.apply(message)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # Starlette's 500 is produced outside all user middleware and would go out bare;
            # send the same answer here, with headers, and re-raise so the error is still logged.
            if not response_started:
                response = PlainTextResponse("Internal Server Error", status_code=500)
                await response(scope, receive, send_with_headers)
            raise

    def _headers_for(self, scope: Scope) -> HeaderSet:
        path = route_path(scope)
        is_docs = any(path == docs or path.startswith(docs + "/") for docs in self.docs_paths)
        api_path = unversioned(path)
        no_store = (
            api_path == "/auth"
            or api_path.startswith("/auth/")
            or "authorization" in Headers(scope=scope)
        )
        return self.header_sets[is_docs, no_store, scope.get("scheme") == "https"]


def header_set(is_docs: bool, no_store: bool, https: bool) -> HeaderSet:
    headers = dict(COMMON_HEADERS)
    if not is_docs:
        headers["Content-Security-Policy"] = API_CSP
    if no_store:
        headers["Cache-Control"] = "no-store"
    if https:
        headers["Strict-Transport-Security"] = HSTS
    # Docs pages keep the policy they set themselves (it names their inline script).
    default = [("Content-Security-Policy", DOCS_CSP)] if is_docs else []
    return HeaderSet(replace=encoded(headers.items()), default=encoded(default))
