"""Settings of the webhooks: where deliveries may go, how long each may take, how they are retried
(`Settings` in app.core.config combines them)."""

from pydantic import BaseModel, Field


class WebhookSettings(BaseModel):
    webhook_worker_enabled: bool = Field(
        default=True,
        description="Each worker process fans changes out to the webhook endpoints and sends "
        "the due deliveries (several workers and replicas share the work); false: this process "
        "only serves the API.",
    )
    webhook_poll_seconds: float = Field(
        default=1.0,
        ge=0.01,
        le=60,
        description="How often the webhook worker looks for new changes and due deliveries; on "
        "PostgreSQL a committed change also wakes it at once (NOTIFY).",
    )
    webhook_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="Time allowed for one delivery attempt (connect, send, answer); past it the "
        "attempt failed and is retried.",
    )
    webhook_max_attempts: int = Field(
        default=8,
        ge=1,
        le=20,
        description="Attempts per delivery before it is marked failed; with the default retry "
        "base the schedule spans about a day.",
    )
    webhook_retry_base_seconds: float = Field(
        default=15.0,
        ge=0.01,
        le=3600,
        description="Wait after the first failed attempt; each later wait is four times the one "
        "before, give or take a fifth (jitter).",
    )
    webhook_disable_after_hours: float = Field(
        default=72,
        gt=0,
        le=24 * 365,
        description="An endpoint whose deliveries have failed without a success for this long "
        "is deactivated (`active` false in GET /webhooks/{id}).",
    )
    webhook_delivery_retention_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="Delivered and failed deliveries are deleted this many days after they "
        "were queued (pending ones are kept until settled).",
    )
    webhook_allow_http: bool = Field(
        default=False,
        description="Accept http:// webhook URLs; false: https:// only.",
    )
    webhook_allow_private_targets: bool = Field(
        default=False,
        description="Accept webhook URLs that resolve to loopback, private, link-local or other "
        "internal addresses (tests, on-premises receivers); false: refused at registration "
        "and again at each delivery. Cloud metadata addresses are refused either way.",
    )
