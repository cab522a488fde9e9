"""Settings of the read replica (`Settings` in app.core.config combines them)."""

from pydantic import BaseModel, Field, ValidationInfo, field_validator

POSTGRESQL_SCHEMES = ("postgres://", "postgresql://", "postgresql+asyncpg://")


class ReplicaSettings(BaseModel):
    database_read_url: str | None = Field(
        default=None,
        description="A streaming replica of DATABASE_URL (PostgreSQL only) for reads of records, "
        "lists, exports and history; unset: everything goes to DATABASE_URL.",
    )
    replica_max_lag_seconds: float = Field(
        default=5.0,
        ge=1,
        le=3600,
        description="Past this replication lag, reads go to the primary until the replica "
        "catches up: about how much older than the primary another account's read may be.",
    )

    # Named apart: Settings' own `_blank_is_unset` would hide one of this name.
    @field_validator("database_read_url", mode="before")
    @classmethod
    def _blank_read_url_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_read_url")
    @classmethod
    def _replica_of_postgresql(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        # DATABASE_URL is validated first (its class comes last among Settings' bases).
        if not str(info.data.get("database_url", "")).startswith("postgresql"):
            raise ValueError("needs DATABASE_URL to be PostgreSQL too")
        value = value.strip()
        for scheme in POSTGRESQL_SCHEMES:
            if value.startswith(scheme):
                return "postgresql+asyncpg://" + value[len(scheme) :]
        raise ValueError("must be a postgresql:// URL (a streaming replica of DATABASE_URL)")
