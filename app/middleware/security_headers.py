"""Security headers on every HTTP response, errors and documentation pages included."""

from collections.abc import Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
    """Add the headers in this module to every response.

    `Cache-Control: no-store` goes on /auth responses (tokens) and on every answer to a request
    carrying credentials (employee records are personal data), so no browser or proxy keeps
    them. HSTS is sent only over https: browsers ignore it on plain http, and a proxy that
    terminates TLS must say so (uvicorn --proxy-headers sets the scheme from X-Forwarded-Proto).
    """

    def __init__(self, app: ASGIApp, *, docs_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.docs_paths = tuple(docs_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self._headers_for(scope)
        # Docs pages keep the policy they set themselves (it names their inline script).
        docs_page = "Content-Security-Policy" not in extra
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    headers[name] = value
                if docs_page:
                    headers.setdefault("Content-Security-Policy", DOCS_CSP)
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

    def _headers_for(self, scope: Scope) -> dict[str, str]:
        path = route_path(scope)
        is_docs = any(path == docs or path.startswith(docs + "/") for docs in self.docs_paths)
        headers = dict(COMMON_HEADERS)
        if not is_docs:
            headers["Content-Security-Policy"] = API_CSP
        if path == "/auth" or path.startswith("/auth/") or "authorization" in Headers(scope=scope):
            headers["Cache-Control"] = "no-store"
        if scope.get("scheme") == "https":
            headers["Strict-Transport-Security"] = HSTS
        return headers


def route_path(scope: Scope) -> str:
    # Behind a prefix (root_path), scope["path"] includes it; routes and docs URLs do not.
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    return path[len(root_path) :] if root_path and path.startswith(root_path) else path
