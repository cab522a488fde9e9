"""`/ws/employees`: the live changes over a WebSocket. The token travels in the first message,
never in the URL (URLs end up in logs); close codes say why a socket ended (docs/api.md).
"""

import asyncio
import contextlib
import json
from typing import Any, Literal

from fastapi import APIRouter, WebSocket
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from app.changes.events import Change
from app.changes.streams.hub import TooManyStreams
from app.changes.streams.service import MAX_EVENT_ID_LENGTH, Streams
from app.changes.streams.stream import Ended, SendItem, last_words
from app.core.errors import AppError, ForbiddenError, InvalidInputError
from app.security.tokens import MAX_TOKEN_LENGTH

router = APIRouter()

AUTH_SECONDS = 5.0
BAD_MESSAGE = 4400
BAD_CREDENTIALS = 4401
FORBIDDEN = 4403
NO_AUTH_IN_TIME = 4408
BAD_POSITION = 4422
TOO_MANY_FOR_ACCOUNT = 1008
TRY_AGAIN_LATER = 1013  # too slow, or the worker's limit
RESTARTING = 1012
INTERNAL = 1011
CLOSE_CODES = {
    Ended.revoked: BAD_CREDENTIALS,
    Ended.slow: TRY_AGAIN_LATER,
    Ended.stopping: RESTARTING,
    Ended.unavailable: INTERNAL,
}


class AuthMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["auth"]
    token: str = Field(min_length=1, max_length=MAX_TOKEN_LENGTH)
    after: str | None = Field(default=None, max_length=MAX_EVENT_ID_LENGTH)


@router.websocket("/ws/employees")
async def employee_events_socket(websocket: WebSocket) -> None:
    """Every change to the employee records as it commits, after an auth message."""
    await websocket.accept()
    hello = await _auth_message(websocket)
    if hello is None:
        return
    streams: Streams = websocket.app.state.streams
    try:
        principal = await streams.authorize(hello.token)
        position = await streams.start_position(hello.after, ("after",))
    except AppError as error:
        await _close(websocket, _refusal_code(error), error.detail)
        return
    try:
        with streams.stream(hello.token, principal, position) as stream:
            await websocket.send_json({"type": "ready"})
            ended = await stream.run(_sender(websocket), _no_beat, _gone(websocket))
    except WebSocketDisconnect:
        return  # the client left before it was ready
    except TooManyStreams as error:
        code = TOO_MANY_FOR_ACCOUNT if error.per_account else TRY_AGAIN_LATER
        await _close(websocket, code, f"too many live streams open {error}")
        return
    if ended is not Ended.gone:
        await _close(websocket, CLOSE_CODES[ended], ended.value)


async def _auth_message(websocket: WebSocket) -> AuthMessage | None:
    """The first message, if it comes in time and is an auth message (else the socket is
    closed and None returned)."""
    try:
        async with asyncio.timeout(AUTH_SECONDS):
            message = await websocket.receive()
    except TimeoutError:
        await _close(websocket, NO_AUTH_IN_TIME, "no auth message in time")
        return None
    if message["type"] == "websocket.disconnect":
        return None
    text = message.get("text") or message.get("bytes") or b""
    try:
        return AuthMessage.model_validate(json.loads(text))
    except (ValueError, ValidationError):
        expected = 'expected {"type": "auth", "token": "...", "after": "<event id, optional>"}'
        await _close(websocket, BAD_MESSAGE, expected)
        return None


def _refusal_code(error: AppError) -> int:
    if isinstance(error, InvalidInputError):
        return BAD_POSITION
    if isinstance(error, ForbiddenError):
        return FORBIDDEN
    return BAD_CREDENTIALS


def _sender(websocket: WebSocket) -> SendItem:
    async def send(change: Change, item: dict[str, Any]) -> None:
        text = json.dumps({"type": "event", "event": item}, separators=(",", ":"))
        await websocket.send_text(text)

    return send


async def _no_beat() -> None:
    """The WebSocket's own pings keep it open (uvicorn's --ws-ping-interval)."""


async def _gone(websocket: WebSocket) -> None:
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass  # the client has nothing more to say; what it sends is ignored


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    # At shutdown uvicorn may have closed the socket itself (1012) a moment before.
    if websocket.application_state is WebSocketState.CONNECTED:
        with contextlib.suppress(WebSocketDisconnect):
            await last_words(lambda: websocket.close(code, reason[:120]))
