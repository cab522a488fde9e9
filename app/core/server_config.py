"""Settings that size and guard the running service: pools and timeouts, transport limits,
lists and imports, logs and metrics (`Settings` in app.core.config combines them)."""

from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import NoDecode

DEFAULT_MAX_HEADER_BYTES = 65_536


class ServerSettings(BaseModel):
    sql_echo: bool = Field(default=False, description="Log every SQL statement (development only).")
    db_pool_size: int = Field(
        default=20,
        ge=1,
        le=100,
        description="Connections kept open per worker, on PostgreSQL: about the requests a worker "
        "has in flight at once (a request waiting for the CPU still holds its connection). "
        "Workers x (pool + overflow) must stay below the server's max_connections.",
    )
    db_max_overflow: int = Field(
        default=0,
        ge=0,
        le=100,
        description="Extra connections per worker during bursts, closed again as soon as they "
        "are returned. 0: a burst waits for a pooled connection instead; opening and closing "
        "them under sustained load cost a sixth of the throughput of reads here.",
    )
    db_pool_timeout: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Seconds a request waits for a free pooled connection.",
    )
    db_connect_timeout: float = Field(
        default=5.0, gt=0, le=300, description="Seconds to wait when opening a new connection."
    )
    # A stalled server never answers: every wait on it has an end, so a request gets its 503
    # within ~7 s (statement timeout + SQLAlchemy's 2 s close) instead of hanging.
    db_statement_timeout: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Seconds any one statement may take before the request "
        "is answered 503; every query here is an indexed lookup or one page of rows.",
    )
    health_check_timeout: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="Seconds GET /health/ready waits for the database before answering 503.",
    )
    shutdown_drain_seconds: int = Field(
        default=20,
        ge=1,
        le=600,
        description="On SIGTERM, seconds in-flight requests get to finish (python -m app serve); "
        "below Kubernetes' default 30 s grace period.",
    )
    # Lists: above this many matching rows, PostgreSQL reports X-Total-Count as the planner's
    # estimate (X-Total-Count-Estimated: true) instead of counting every row per page.
    exact_count_limit: int = Field(
        default=1_000,
        ge=0,
        le=100_000_000,
        description="Largest X-Total-Count of the employee list that is counted exactly.",
    )
    import_max_rows: int = Field(
        default=20_000,
        ge=1,
        le=1_000_000,
        description="Most rows POST /employees/import accepts in one file; larger files go "
        "through `python -m app import-csv`, which has no limit.",
    )

    # Transport
    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        le=100 * 1_048_576,
        description="Largest request body in bytes; larger ones get 413 before parsing.",
    )
    max_header_bytes: int = Field(
        default=DEFAULT_MAX_HEADER_BYTES,
        ge=4096,
        le=1_048_576,
        description="Largest request head (request line and headers) in bytes; a larger one "
        "gets 431 and its connection is closed, before it is parsed.",
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Seconds a client has to send a whole request head once it has connected or "
        "started a request; then 408 and the connection is closed.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Comma-separated browser origins allowed to call the API, each one named "
        "(`*` is refused); empty: no CORS.",
    )
    trusted_hosts: Annotated[list[str], NoDecode] = Field(
        default=["*"],
        description="Comma-separated accepted `Host` headers (others get 400); `*` accepts any.",
    )
    compression_enabled: bool = Field(
        default=True,
        description="Compress answers with gzip, Brotli or zstd when the request's "
        "Accept-Encoding allows; false when a proxy in front compresses instead.",
    )
    compression_min_bytes: int = Field(
        default=1024,
        ge=1,
        le=1_048_576,
        description="Smallest whole body compressed, in bytes; smaller ones go out as they are "
        "(streamed bodies are always compressed).",
    )

    # Observability
    log_format: Literal["json", "console"] = Field(
        default="json",
        description="json: one JSON object per line (production); console: readable, coloured.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Lowest level logged, by the app, uvicorn and SQLAlchemy."
    )
    access_log: bool = Field(
        default=True, description="One log line per request (method, route, status, duration)."
    )
    metrics_enabled: bool = Field(
        default=True, description="Serve Prometheus metrics at GET /metrics (keep it internal)."
    )

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("cors_origins", "trusted_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard_origin(cls, value: list[str]) -> list[str]:
        # Credentials (bearer tokens) are sent cross-origin only to origins named one by one.
        if "*" in value:
            raise ValueError("list origins explicitly; '*' is not allowed")
        return value
