"""Live streams of the change feed: Server-Sent Events (`sse`) and WebSocket (`ws`), woken by
PostgreSQL LISTEN/NOTIFY or, on SQLite, by the engine (`notify`)."""

from app.changes.streams.service import Streams, start_streams
from app.changes.streams.sse import router as sse_router
from app.changes.streams.ws import router as ws_router

__all__ = ["Streams", "sse_router", "start_streams", "ws_router"]
