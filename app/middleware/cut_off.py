"""A request uvicorn cancels at the end of a shutdown's drain time answers 503 with `Retry-After`,
not 500: the client did nothing wrong and may retry on another replica.
"""

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BODY = b'{"detail":"The service is shutting down; retry shortly."}'


class CutOffMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except asyncio.CancelledError:
            if not started:
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(BODY)).encode()),
                    (b"retry-after", b"1"),
                    (b"connection", b"close"),
                ]
                await send({"type": "http.response.start", "status": 503, "headers": headers})
                await send({"type": "http.response.body", "body": BODY})
            raise
