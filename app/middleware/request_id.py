"""`X-Request-ID`: one id per request, taken from the caller when sane, returned on the response."""

import os
import re

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.context import request_id_var
from app.middleware.headers import set_header

HEADER = "X-Request-ID"
_NAME = HEADER.lower().encode("latin-1")
# Letters, digits and a few separators, at most 128: enough for UUIDs and tracing ids, and
# nothing that could forge a log line or smuggle markup into a record.
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def accept_or_generate(value: str | None) -> str:
    if value is not None and _SANE.fullmatch(value):
        return value
    # As random as a UUID4's hex, without building a UUID object.
    return os.urandom(16).hex()


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accept_or_generate(Headers(scope=scope).get(HEADER))
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)

        value = request_id.encode("latin-1")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                set_header(message, _NAME, value)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
