"""Refuse request bodies over a size limit before anything parses them."""

import json

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOO_LARGE_BODY = json.dumps({"detail": "Request body too large"}).encode()


class BodyTooLargeError(Exception):
    """Raised into the application when the body it is reading crosses the limit."""


class BodyLimitMiddleware:
    """Answer 413 once a request body exceeds `max_body_bytes`: a declared length at once, a
    chunked or lying one as the bytes arrive."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._declared_too_large(scope):
            await send_too_large(send)
            return

        received = 0
        too_large = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            if too_large:
                raise BodyTooLargeError
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large = True
                    raise BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if too_large and not response_started:
                # FastAPI turns a failed body read into its own 400; the client is owed a 413.
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not too_large:
                raise
        if too_large and not response_started:
            await send_too_large(send)

    def _declared_too_large(self, scope: Scope) -> bool:
        for value in Headers(scope=scope).getlist("content-length"):
            if value.strip().isdigit() and int(value) > self.max_body_bytes:
                return True
        return False


async def send_too_large(send: Send) -> None:
    # The rest of the body is never read, so the connection cannot carry another request.
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(TOO_LARGE_BODY)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": TOO_LARGE_BODY})
