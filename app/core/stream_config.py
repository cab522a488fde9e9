"""Settings of the live change streams (Server-Sent Events and WebSocket; app.changes.streams);
`Settings` in app.core.config combines them."""

from pydantic import BaseModel, Field


class StreamSettings(BaseModel):
    stream_heartbeat_seconds: float = Field(
        default=15,
        gt=0,
        le=300,
        description="Live streams: a comment line this often keeps proxies from closing an idle "
        "stream, and the caller's credentials are checked again; a stream ends within this "
        "long of its credentials ending (expiry, sign-out everywhere, deactivation, deletion).",
    )
    stream_max_per_account: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Live streams open at once per account on each worker; one more gets 429 "
        "(WebSocket: close 1008).",
    )
    stream_max_per_worker: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Live streams open at once on each worker process; one more gets 429 "
        "(WebSocket: close 1013).",
    )
    stream_buffer_events: int = Field(
        default=500,
        ge=1,
        le=100_000,
        description="Events a live stream holds for a client that reads slower than they "
        "come; a client that takes none for a heartbeat while it is full is disconnected "
        "(WebSocket: close 1013) and resumes from its last event id.",
    )
