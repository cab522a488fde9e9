"""Settings of the sign-in and request limits and of the Redis that shares their counters
(`Settings` in app.core.config combines them)."""

from limits import parse_many
from pydantic import BaseModel, Field, field_validator


class LimitSettings(BaseModel):
    # Sign-in limits ("N/period", the `limits` notation)
    redis_url: str | None = Field(
        default=None,
        description="Redis for the sign-in and request counters, shared by every worker and "
        "replica, e.g. redis://127.0.0.1:6379/0; unset: each worker counts in memory.",
    )
    login_limit_per_client: str = Field(
        default="5/minute",
        description="Failed sign-ins allowed per username and client address (`N/second`, "
        "`N/minute`, `N/hour`).",
    )
    login_limit_per_username: str = Field(
        default="100/hour", description="Failed sign-ins allowed per username, all addresses."
    )
    rate_limit_fail_open: bool = Field(
        default=True,
        description="With Redis unreachable: true signs in without limits and counts requests "
        "in each worker (logged), false answers 503.",
    )

    # Request limits for every caller (the `limits` notation; counted in Redis with REDIS_URL)
    rate_limit_enabled: bool = Field(
        default=True,
        description="Count every request except health probes, metrics and the docs pages; "
        "false leaves only the sign-in limits.",
    )
    rate_limit_authenticated: str = Field(
        default="1200/minute", description="Requests allowed per signed-in account."
    )
    rate_limit_anonymous: str = Field(
        default="60/minute",
        description="Requests allowed per client address without a valid token.",
    )
    rate_limit_writes: str = Field(
        default="300/minute",
        description="POST, PUT, PATCH and DELETE requests allowed per account (counted besides "
        "RATE_LIMIT_AUTHENTICATED).",
    )
    redis_key_prefix: str = Field(
        default="employee-api",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Prefix of every Redis key the service writes; deployments sharing one Redis "
        "need different prefixes.",
    )

    @field_validator(
        "login_limit_per_client",
        "login_limit_per_username",
        "rate_limit_authenticated",
        "rate_limit_anonymous",
        "rate_limit_writes",
    )
    @classmethod
    def _limit_notation(cls, value: str) -> str:
        try:
            items = parse_many(value)
        except ValueError:
            items = []
        if len(items) != 1 or items[0].amount < 1:
            raise ValueError("must be one limit such as 100/minute (per second, minute, hour, day)")
        return value

    # Named apart: Settings' own `_blank_is_unset` would hide one of this name.
    @field_validator("redis_url", mode="before")
    @classmethod
    def _blank_redis_url_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value
