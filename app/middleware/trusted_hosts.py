"""Requests for a Host the service does not answer get 400 with the API's JSON error body
(Starlette's `TrustedHostMiddleware` decides; its refusal is plain text).
"""

import json

from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DETAIL = "Invalid host header"
BODY = json.dumps({"detail": DETAIL}).encode()
_PASSED = "app.host_trusted"  # scope key: the request reached the application


class TrustedHosts:
    def __init__(self, app: ASGIApp, *, allowed_hosts: list[str]) -> None:
        async def trusted(scope: Scope, receive: Receive, send: Send) -> None:
            scope[_PASSED] = True
            await app(scope, receive, send)

        self.check = TrustedHostMiddleware(trusted, allowed_hosts=allowed_hosts, www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.check(scope, receive, send)
            return

        async def send_refusal_as_json(message: Message) -> None:
            if scope.get(_PASSED):
                await send(message)
            elif message["type"] == "http.response.start":
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(BODY)).encode()),
                ]
                await send(
                    {"type": "http.response.start", "status": message["status"], "headers": headers}
                )
            elif message["type"] == "http.response.body":
                await send({"type": "http.response.body", "body": BODY})

        await self.check(scope, receive, send_refusal_as_json)
