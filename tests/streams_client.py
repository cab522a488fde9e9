"""Clients of the live streams over ASGI, in the test's process: an SSE stream read frame by
frame as the app sends it (httpx's ASGI transport hands a body over only once it is complete),
one that stops reading (a slow consumer), and a WebSocket."""

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

WAIT = 10.0


@dataclass
class Frame:
    """One SSE block: its fields, and its comment lines."""

    fields: dict[str, str] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)

    @property
    def data(self) -> Any:
        return json.loads(self.fields["data"])


def parse_frames(text: str) -> list[Frame]:
    frames = []
    for block in text.split("\n\n"):
        if not block:
            continue
        frame = Frame()
        for line in block.split("\n"):
            if line.startswith(":"):
                frame.comments.append(line[1:].strip())
            else:
                name, _, value = line.partition(": ")
                frame.fields[name] = value
        frames.append(frame)
    return frames


def scope_for(path: str, headers: dict[str, str], kind: str = "http") -> dict[str, Any]:
    route, _, query = path.partition("?")
    return {
        "type": kind,
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http" if kind == "http" else "ws",
        "path": route,
        "raw_path": route.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"test")]
        + [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()],
        "server": ("test", 80),
        "client": ("127.0.0.1", 50000),
        "subprotocols": [],
        "extensions": {},
        "state": {},
    }


class SseStream:
    """`GET path` on the app; its frames as they come. `stall()` makes the client stop reading:
    the app's next send never returns (a full socket)."""

    def __init__(self, app: Any, path: str, headers: dict[str, str]) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.buffer = ""
        self.frames: asyncio.Queue[Frame] = asyncio.Queue()
        self.started = asyncio.Event()
        self.stalled = False
        self.complete = False
        self._left = asyncio.Event()
        self.body = b""
        self.task = asyncio.ensure_future(app(scope_for(path, headers), self._receive, self._send))

    async def _receive(self) -> dict[str, Any]:
        if not hasattr(self, "_asked"):
            self._asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._left.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        if self.stalled:
            await asyncio.Event().wait()
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
            self.started.set()
            return
        part = message.get("body", b"")
        self.body += part
        if self.headers.get("content-type", "").startswith("text/event-stream"):
            self.buffer += part.decode()
            *blocks, self.buffer = self.buffer.split("\n\n")
            for frame in parse_frames("\n\n".join(blocks)):
                self.frames.put_nowait(frame)
        if not message.get("more_body", False):
            self.complete = True

    async def opened(self) -> "SseStream":
        await asyncio.wait_for(self.started.wait(), WAIT)
        return self

    async def next(self, *, events_only: bool = True, wait: float = WAIT) -> Frame:
        while True:
            frame = await asyncio.wait_for(self.frames.get(), wait)
            if not events_only or "id" in frame.fields:
                return frame

    async def events(self, count: int) -> list[Frame]:
        return [await self.next() for _ in range(count)]

    def stall(self) -> None:
        self.stalled = True

    async def ended(self, wait: float = WAIT) -> None:
        """Until the app is done with the request (it ended the stream)."""
        await asyncio.wait_for(asyncio.shield(self.task), wait)

    async def close(self) -> None:
        self._left.set()
        try:
            await asyncio.wait_for(self.task, WAIT)
        except BaseException:
            self.task.cancel()


async def open_sse(app: Any, path: str, token: str | None, **headers: str) -> SseStream:
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return await SseStream(app, path, {k.replace("_", "-"): v for k, v in headers.items()}).opened()


class WsClient:
    def __init__(self, app: Any, path: str = "/ws/employees") -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outgoing: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outgoing.put_nowait({"type": "websocket.connect"})
        self.closed: dict[str, Any] | None = None
        self.task = asyncio.ensure_future(
            app(scope_for(path, {}, "websocket"), self._receive, self._send)
        )

    async def _receive(self) -> dict[str, Any]:
        return await self.outgoing.get()

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.close":
            self.closed = message
        self.incoming.put_nowait(message)

    def send(self, payload: Any) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        self.outgoing.put_nowait({"type": "websocket.receive", "text": text})

    async def message(self, wait: float = WAIT) -> dict[str, Any]:
        """The next message the app sent (its JSON), or the close as {"close": code}."""
        while True:
            sent = await asyncio.wait_for(self.incoming.get(), wait)
            if sent["type"] == "websocket.accept":
                continue
            if sent["type"] == "websocket.close":
                return {"close": sent.get("code", 1000)}
            return json.loads(sent["text"])

    async def close_code(self, wait: float = WAIT) -> int:
        while True:
            message = await self.message(wait)
            if "close" in message:
                return int(message["close"])

    async def leave(self) -> None:
        self.outgoing.put_nowait({"type": "websocket.disconnect", "code": 1000})
        try:
            await asyncio.wait_for(self.task, WAIT)
        except BaseException:
            self.task.cancel()


async def open_ws(app: Any, token: str, after: str | None = None) -> WsClient:
    client = WsClient(app)
    client.send({"type": "auth", "token": token} | ({"after": after} if after else {}))
    assert await client.message() == {"type": "ready"}
    return client
