"""`GET /employees/events`: every change to the employee records, live, as Server-Sent Events.

Each event is `id: <event_id>`, `event: <type>`, `data: <the feed item>`; a comment line every
heartbeat; at shutdown a `retry:` hint and the end, so the client reconnects (to another
replica) with `Last-Event-ID` and loses nothing.
"""

import contextlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response
from fastapi.security.utils import get_authorization_scheme_param
from starlette.types import Receive, Scope, Send

from app.accounts.dependencies import EmployeeReader
from app.changes.events import Change
from app.changes.streams.hub import TooManyStreams
from app.changes.streams.service import MAX_EVENT_ID_LENGTH, Streams
from app.changes.streams.stream import ChangeStream, Ended, last_words
from app.core.errors import TooManyRequestsError
from app.http.openapi import error_responses, headers

router = APIRouter(prefix="/employees", tags=["changes"])

MEDIA_TYPE = "text/event-stream"
# The client's pause before it reconnects after the server ended the stream.
RECONNECT_MS = 1000
HEARTBEAT = b": keep-alive\n\n"
STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    # nginx and similar proxies hold a response back in a buffer unless told not to.
    (b"x-accel-buffering", b"no"),
]
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The stream: `id:`, `event:` and `data:` (the feed item as JSON) for "
        "each change, a comment line every STREAM_HEARTBEAT_SECONDS; it does not end by itself.",
        "content": {
            MEDIA_TYPE: {
                "schema": {"type": "string"},
                "example": "id: ev_AAAAAAAAAvUAAAAAAAAAKg\nevent: employee.updated\n"
                'data: {"event_id":"ev_AAAAAAAAAvUAAAAAAAAAKg","type":"employee.updated",...}\n\n'
                ": keep-alive\n\n",
            }
        },
    },
    **error_responses(401, 403, 422, 429),
}
RESPONSES[429] = RESPONSES[429] | {
    "description": "Too many streams open for this account (STREAM_MAX_PER_ACCOUNT) or on "
    "this worker (STREAM_MAX_PER_WORKER).",
    "headers": headers("Retry-After"),
}


def streams_of(request: Request) -> Streams:
    streams: Streams = request.app.state.streams
    return streams


@router.get(
    "/events",
    response_class=Response,
    responses=RESPONSES,
    operation_id="stream_employee_events",
)
async def stream_employee_events(
    request: Request,
    principal: EmployeeReader,
    after: Annotated[
        str | None,
        Query(
            max_length=MAX_EVENT_ID_LENGTH,
            description="Start right after this event id (absent: from now); `Last-Event-ID` "
            "wins when both are sent.",
        ),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=MAX_EVENT_ID_LENGTH,
            description="Sent by an EventSource when it reconnects: resume right after it.",
        ),
    ] = None,
) -> Response:
    """Every change to the employee records as it commits, as Server-Sent Events."""
    streams = streams_of(request)
    if last_event_id is not None:
        position = await streams.start_position(last_event_id, ("header", "Last-Event-ID"))
    else:
        position = await streams.start_position(after)
    _, token = get_authorization_scheme_param(request.headers.get("authorization"))
    opened = contextlib.ExitStack()
    try:
        stream = opened.enter_context(streams.stream(token.strip(), principal, position))
    except TooManyStreams as error:
        raise TooManyRequestsError(
            f"Too many live streams open {error}; close one or retry later", retry_after=5
        ) from None
    return EventStreamResponse(stream, opened)


def event_frame(change: Change, item: dict[str, Any]) -> bytes:
    data = json.dumps(item, separators=(",", ":"), ensure_ascii=False)
    return f"id: {change.event_id}\nevent: {change.type}\ndata: {data}\n\n".encode()


class EventStreamResponse(Response):
    """The stream as an ASGI answer; `opened` holds its place in the limits until it ends."""

    def __init__(self, stream: ChangeStream, opened: contextlib.ExitStack) -> None:
        super().__init__(media_type=MEDIA_TYPE)
        self.stream = stream
        self.opened = opened

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with self.opened:
            await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})

            async def send_item(change: Change, item: dict[str, Any]) -> None:
                body = event_frame(change, item)
                await send({"type": "http.response.body", "body": body, "more_body": True})

            async def send_beat() -> None:
                await send({"type": "http.response.body", "body": HEARTBEAT, "more_body": True})

            async def gone() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass

            ended = await self.stream.run(send_item, send_beat, gone())
            if ended is Ended.gone:
                return
            last = b""
            if ended in (Ended.stopping, Ended.unavailable):
                last = f": {ended.value}\nretry: {RECONNECT_MS}\n\n".encode()
            await last_words(lambda: send({"type": "http.response.body", "body": last}))
