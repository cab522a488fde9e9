"""uvicorn's HTTP/1.1 protocols with a bound on the request head: its size and its arrival time.

A head over MAX_HEADER_BYTES gets 431 before any parsing, one not complete within
HEADER_TIMEOUT_SECONDS gets 408; either closes the connection (uvicorn sets neither bound).

They also tell when the server starts to stop (`on_server_stopping`): uvicorn asks each open
connection to shut down before it drains the requests in flight, and a long-lived answer (a
live stream) must end then, not hold the drain until its time runs out.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.core.config import get_settings
from app.core.server_config import DEFAULT_MAX_HEADER_BYTES

logger = logging.getLogger("app.server")

# Ends of a request head: a blank line, with or without its carriage returns.
HEAD_ENDS = (b"\r\n\r\n", b"\n\n", b"\n\r\n")
TOO_LARGE = b'{"detail":"Request header fields too large"}'
TIMED_OUT = b'{"detail":"Request head not received in time"}'


_stopping: list[Callable[[], None]] = []


def on_server_stopping(callback: Callable[[], None]) -> Callable[[], None]:
    """Call `callback` once when this process's server starts to stop; returns the undo."""
    _stopping.append(callback)
    return lambda: _stopping.remove(callback) if callback in _stopping else None


def server_stopping() -> None:
    while _stopping:
        callback = _stopping.pop(0)
        try:
            callback()
        except Exception:
            logger.exception("a shutdown callback failed")


def refusal(status: bytes, body: bytes) -> bytes:
    return b"".join(
        [
            b"HTTP/1.1 ",
            status,
            b"\r\ncontent-type: application/json\r\ncontent-length: ",
            str(len(body)).encode(),
            b"\r\nconnection: close\r\n\r\n",
            body,
        ]
    )


def head_length(tail: bytes, data: bytes) -> int:
    """How many bytes of `data` belong to a head whose last bytes so far were `tail`."""
    window = tail + data
    ends = [found + len(end) for end in HEAD_ENDS if (found := window.find(end)) >= 0]
    return len(data) if not ends else max(min(ends) - len(tail), 0)


class HeadGuard:
    """Counts a connection's bytes while it sends a request head, before the parser sees them,
    and closes the connection when the head passes the size limit or its deadline."""

    def __init__(self, protocol: Any, limit: int, seconds: float) -> None:
        self.protocol = protocol
        self.limit = limit
        self.seconds = seconds
        self.timer: asyncio.TimerHandle | None = None
        self.in_head = True
        self.count = 0
        self.tail = b""

    def admit(self, data: bytes) -> bool:
        """Whether `data` may go to the parser; False once the connection has been refused."""
        if not self.in_head:
            return True
        self.count += head_length(self.tail, data)
        self.tail = (self.tail + data)[-3:]
        if self.count <= self.limit:
            return True
        logger.warning("request head over %d bytes: 431, connection closed", self.limit)
        self.refuse(b"431 Request Header Fields Too Large", TOO_LARGE)
        return False

    def head_done(self) -> None:
        self.in_head = False
        self.stop_deadline()

    def next_head(self) -> None:
        """A new request may start: its head gets the whole limit, and its own deadline if it
        arrives in pieces (until then the idle connection is uvicorn's keep-alive timeout's)."""
        if not self.in_head:
            self.in_head, self.count, self.tail = True, 0, b""

    def start_deadline(self) -> None:
        if self.timer is None:
            self.timer = self.protocol.loop.call_later(self.seconds, self.expire)

    def stop_deadline(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def expire(self) -> None:
        self.timer = None
        logger.warning("request head not complete in %ss: connection closed", self.seconds)
        self.refuse(b"408 Request Timeout", TIMED_OUT)

    def refuse(self, status: bytes, body: bytes) -> None:
        self.stop_deadline()
        transport = self.protocol.transport
        if not transport.is_closing():
            transport.write(refusal(status, body))
            transport.close()


def head_guard(protocol: HttpToolsProtocol | H11Protocol) -> HeadGuard:
    # The limit is uvicorn's own setting for h11's incomplete heads, which the serve command
    # sets from MAX_HEADER_BYTES; each worker reads the timeout from its environment.
    limit = protocol.config.h11_max_incomplete_event_size or DEFAULT_MAX_HEADER_BYTES
    return HeadGuard(protocol, limit, get_settings().header_timeout_seconds)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = head_guard(self)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.guard.start_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.stop_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        guard = self.guard
        if not guard.admit(data):
            return
        super().data_received(data)
        if guard.in_head and guard.count:
            # Only a head still incomplete after this chunk needs the deadline: most arrive
            # whole in one read, and their requests cost no timer. A request whose message
            # ended in this chunk leaves a next head that has not begun: none for it, or a
            # long answer (a live stream) would be cut when it ran out.
            guard.start_deadline()

    def on_headers_complete(self) -> None:
        self.guard.head_done()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.guard.next_head()

    def shutdown(self) -> None:
        server_stopping()
        super().shutdown()


class BoundedH11Protocol(H11Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = head_guard(self)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.guard.start_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.stop_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # h11 says where the client is: IDLE until a whole request head has been parsed.
        if self.conn.their_state is h11.IDLE:
            self.guard.next_head()
        if not self.guard.admit(data):
            return
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:
            self.guard.start_deadline()
        else:
            self.guard.head_done()

    def shutdown(self) -> None:
        server_stopping()
        super().shutdown()
