"""Response compression as the request's Accept-Encoding asks (gzip, Brotli, zstd), and
`Vary: Accept-Encoding` on every answer. The rules are in docs/api.md#compression: a whole body
under the minimum size goes out as it is; a streamed body is compressed part by part, each part
flushed so the client can read it at once; 1xx, 204, 205, 206, 304 and answers already encoded
or of a type that does not compress pass through.
"""

from collections.abc import Callable

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.content_coding import (
    CODINGS,
    Coding,
    Pair,
    StreamEncoder,
    compressible,
    negotiate,
    untagged,
    with_vary,
)

# Statuses without content, or whose content is part of a representation (206).
_NOT_COMPRESSED = frozenset({204, 205, 206, 304})
# Larger bodies are compressed in a worker thread, off the event loop.
_OFFLOAD_BYTES = 256 * 1024
# Zero-copy file sends would bypass the encoder: an app that sees them uses body messages.
_FILE_EXTENSIONS = ("http.response.pathsend", "http.response.zerocopysend")


class CompressionMiddleware:
    def __init__(self, app: ASGIApp, *, min_bytes: int) -> None:
        self.app = app
        self.min_bytes = min_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        accept: bytes | None = None
        if_none_match: bytes | None = None
        conditional = False
        for name, value in scope["headers"]:
            if name == b"accept-encoding":
                accept = value if accept is None else accept + b"," + value
            elif name == b"if-none-match":
                if_none_match = value
                conditional = True
            elif name == b"if-match":
                conditional = True
        choice = negotiate(None if accept is None else accept.decode("latin-1"))
        coding = choice.coding
        if conditional:
            _untag_preconditions(scope, coding)
        if coding is None:
            await self.app(scope, receive, _vary_only(send))
            return
        extensions = scope.get("extensions")
        if extensions and any(name in extensions for name in _FILE_EXTENSIONS):
            scope["extensions"] = {k: v for k, v in extensions.items() if k not in _FILE_EXTENSIONS}
        responder = _Responder(
            send,
            coding,
            min_bytes=self.min_bytes if choice.identity_ok else 1,
            head=scope["method"] == "HEAD",
            if_none_match=if_none_match,
        )
        await self.app(scope, receive, responder.send)


def _untag_preconditions(scope: Scope, coding: Coding | None) -> None:
    """Let the service compare the tags a client got from compressed answers: any coding's
    suffix off If-Match (a write names a version of the record, whatever bytes carried it);
    only the negotiated coding's off If-None-Match (a 304 says those very bytes are current)."""
    headers = []
    for name, value in scope["headers"]:
        if name == b"if-match":
            value = untagged(value, CODINGS)
        elif name == b"if-none-match" and coding is not None:
            value = untagged(value, (coding,))
        headers.append((name, value))
    scope["headers"] = headers


def _vary_only(send: Send) -> Send:
    async def send_with_vary(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = with_vary(message.get("headers", ()))
        await send(message)

    return send_with_vary


class _Responder:
    """The `send` of one answer that may be compressed with `coding`."""

    def __init__(
        self,
        send: Send,
        coding: Coding,
        *,
        min_bytes: int,
        head: bool,
        if_none_match: bytes | None,
    ) -> None:
        self._send = send
        self.coding = coding
        self.min_bytes = min_bytes
        self.head = head
        self.if_none_match = if_none_match
        self.pending: Message | None = None  # the start, held until the first body part
        self.stream: StreamEncoder | None = None
        self.passing = False  # sent as the app made it (but for Vary and a 304's tag)
        self.emptied = False  # a HEAD answer's headers say encoded: no body bytes follow

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            await self._start(message)
        elif self.pending is None or kind != "http.response.body":
            await self._forward(message)
        else:
            start, self.pending = self.pending, None
            await self._first_body(start, message)

    async def _start(self, message: Message) -> None:
        headers = with_vary(message.get("headers", ()))
        message["headers"] = headers
        if message["status"] != 304 and not self.head and _declared_under(headers, self.min_bytes):
            # One small body, as most single records are: nothing else to look at.
            self.passing = True
            await self._send(message)
        elif not self._may_compress(message["status"], headers):
            if message["status"] == 304:
                message["headers"] = self._tag_not_modified(headers)
            self.passing = True
            await self._send(message)
        elif self.head:
            await self._start_head(message, headers)
        else:
            self.pending = message

    async def _start_head(self, message: Message, headers: list[Pair]) -> None:
        # The headers GET would send; its compressed length is not known without the body.
        length = next((value for name, value in headers if name == b"content-length"), None)
        if length is not None and length.isdigit() and int(length) < self.min_bytes:
            self.passing = True
        else:
            message["headers"] = self._encoded(headers, None)
            self.emptied = True
        await self._send(message)

    async def _forward(self, message: Message) -> None:
        if self.pending is not None:  # a message other than a body before the first body
            start, self.pending = self.pending, None
            self.passing = True
            await self._send(start)
        elif message["type"] == "http.response.body" and not self.passing:
            if self.emptied:
                message = {**message, "body": b""}
            else:
                message = await self._encode(message)
        await self._send(message)

    async def _first_body(self, start: Message, message: Message) -> None:
        body: bytes = message.get("body", b"")
        if message.get("more_body", False):
            # A stream: headers now, then each part compressed as it comes.
            start["headers"] = self._encoded(start["headers"], None)
            self.stream = self.coding.stream()
            await self._send(start)
            await self._send(await self._encode(message))
        elif len(body) < self.min_bytes:
            self.passing = True
            await self._send(start)
            await self._send(message)
        else:
            compressed = await _run(self.coding.compress, body)
            start["headers"] = self._encoded(start["headers"], len(compressed))
            self.passing = True
            await self._send(start)
            await self._send({**message, "body": compressed})

    async def _encode(self, message: Message) -> Message:
        assert self.stream is not None
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        encoded = await _run(self.stream.flushed if more else self.stream.finish, body)
        return {**message, "body": encoded}

    def _may_compress(self, status: int, headers: list[Pair]) -> bool:
        if status < 200 or status in _NOT_COMPRESSED:
            return False
        content_type = None
        for name, value in headers:
            name = name.lower()
            if name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
                return False
            if name == b"content-range":
                return False
            if name == b"content-type":
                content_type = value
        return content_type is not None and compressible(content_type)

    def _encoded(self, headers: list[Pair], length: int | None) -> list[Pair]:
        """Content-Encoding set (over an app's `identity`), the length replaced (or dropped for
        a stream), strong ETags made distinct, and no byte ranges offered on bytes that depend
        on the request."""
        result = []
        for name, value in headers:
            lower = name.lower()
            if lower in (b"content-length", b"accept-ranges", b"content-encoding"):
                continue
            result.append((name, self.coding.tagged(value) if lower == b"etag" else value))
        result.append((b"content-encoding", self.coding.token))
        if length is not None:
            result.append((b"content-length", str(length).encode("latin-1")))
        return result

    def _tag_not_modified(self, headers: list[Pair]) -> list[Pair]:
        """A 304 for a client that named the compressed answer's tag repeats that tag."""
        if self.if_none_match is None:
            return headers
        result = []
        for name, value in headers:
            if name.lower() == b"etag":
                tagged = self.coding.tagged(value)
                if tagged != value and tagged in self.if_none_match:
                    value = tagged
            result.append((name, value))
        return result


def _declared_under(headers: list[Pair], min_bytes: int) -> bool:
    """Whether the answer's Content-Length says its body is under `min_bytes`."""
    for name, value in headers:
        if name == b"content-length" or name.lower() == b"content-length":
            return value.isdigit() and int(value) < min_bytes
    return False


async def _run(function: Callable[[bytes], bytes], data: bytes) -> bytes:
    if len(data) > _OFFLOAD_BYTES:
        return await anyio.to_thread.run_sync(function, data)
    return function(data)
