"""Settings read from the environment (and `.env`), validated once, cached."""

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, Request
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core.limit_config import LimitSettings
from app.core.replica_config import ReplicaSettings
from app.core.server_config import ServerSettings
from app.core.sso_config import SsoSettings
from app.core.stream_config import StreamSettings
from app.core.webhook_config import WebhookSettings

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEFAULT_SQLITE_URL = f"sqlite+aiosqlite:///{PROJECT_DIR / 'employees.db'}"

# Values that appear in docs and examples: a server started with one of them would sign tokens
# with a key that anybody can read.
PLACEHOLDER_SECRETS = frozenset(
    {
        "change-me",
        "changeme",
        "secret",
        "your-secret-key",
        "replace-with-a-long-random-string-of-at-least-32-characters",
    }
)


MIN_SECRET_LENGTH = 32
# Who sees employees' birth dates (app.employees.privacy).
DobVisibleTo = Literal["all", "auditors", "admins"]


class ConfigurationError(RuntimeError):
    """The environment does not describe a runnable service; the message says what to fix."""


DATABASE_CONFIG = SettingsConfigDict(
    env_file=".env", env_file_encoding="utf-8", env_ignore_empty=True, extra="ignore"
)


class DatabaseSettings(BaseSettings):
    """What migrations need: only the database, so they run without the app's secrets."""

    model_config = DATABASE_CONFIG

    database_url: str = Field(
        default=DEFAULT_SQLITE_URL,
        description="SQLAlchemy URL: postgresql+asyncpg://USER:PASSWORD@HOST:5432/DB or "
        "sqlite+aiosqlite:///PATH; postgresql:// and sqlite:// are normalised.",
    )

    database_pool_mode: Literal["session", "transaction"] = Field(
        default="session",
        description="How DATABASE_URL's connections are pooled: session (PostgreSQL itself, or "
        "PgBouncer in session mode) or transaction (PgBouncer in transaction pooling: no "
        "prepared statement is kept across transactions).",
    )
    database_pooler_prepared_statements: bool = Field(
        default=False,
        description="In transaction pooling, the pooler keeps protocol-level prepared statements "
        "across transactions (PgBouncer 1.21+ with max_prepared_statements > 0): asyncpg's "
        "statement cache then stays on, and PostgreSQL plans each statement once per server "
        "connection instead of on every execution.",
    )
    database_direct_url: str | None = Field(
        default=None,
        description="PostgreSQL itself, past the pooler, for what needs a session of its own: "
        "migrations (their advisory lock), LISTEN, session-level settings; unset: DATABASE_URL "
        "(required for migrations when DATABASE_POOL_MODE=transaction).",
    )

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str) -> str:
        return normalise_database_url(value)

    @field_validator("database_pool_mode", mode="before")
    @classmethod
    def _lower_case_mode(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("database_pool_mode")
    @classmethod
    def _pooler_needs_postgresql(cls, value: str, info: ValidationInfo) -> str:
        if value == "transaction" and str(info.data.get("database_url", "")).startswith("sqlite"):
            raise ValueError("transaction pooling (PgBouncer) needs a PostgreSQL DATABASE_URL")
        return value

    @field_validator("database_pooler_prepared_statements")
    @classmethod
    def _prepared_statements_need_transaction_pooling(
        cls, value: bool, info: ValidationInfo
    ) -> bool:
        if value and info.data.get("database_pool_mode") != "transaction":
            raise ValueError(
                "only applies to DATABASE_POOL_MODE=transaction (PgBouncer in transaction "
                "pooling); in session mode asyncpg's statement cache is always on"
            )
        return value

    @field_validator("database_direct_url")
    @classmethod
    def _direct_url_is_postgresql(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if not value.strip().startswith(("postgres://", "postgresql://", "postgresql+asyncpg://")):
            raise ValueError("must be a postgresql:// URL (PostgreSQL itself, past the pooler)")
        if str(info.data.get("database_url", "")).startswith("sqlite"):
            raise ValueError("is for PostgreSQL behind a pooler, and DATABASE_URL is SQLite")
        return normalise_database_url(value)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def session_url(self, purpose: str) -> str:
        """Where a connection that keeps session state goes (`purpose` names it in the error):
        the migrations' advisory lock, LISTEN, a session-level SET. PgBouncer in transaction
        pooling hands each transaction any server connection, so such state would be lost or
        leak to another client."""
        if self.database_direct_url is not None:
            return self.database_direct_url
        if self.database_pool_mode == "transaction":
            raise ConfigurationError(
                f"DATABASE_DIRECT_URL: {purpose} need a session of their own, which "
                "DATABASE_POOL_MODE=transaction (PgBouncer) cannot carry; set it to PostgreSQL "
                "itself, past the pooler"
            )
        return self.database_url


def normalise_database_url(value: str) -> str:
    value = value.strip()
    for plain, driver in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if value.startswith(plain):
            return driver + value[len(plain) :]
    if not value.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        raise ValueError("must be a postgresql:// or sqlite:// URL")
    return value


class Settings(
    StreamSettings,
    WebhookSettings,
    SsoSettings,
    ServerSettings,
    LimitSettings,
    ReplicaSettings,
    DatabaseSettings,
):
    """Everything the service reads from the environment (and `.env`)."""

    model_config = DATABASE_CONFIG

    jwt_secret_key: SecretStr = Field(description="HMAC key for access tokens (32+ characters).")
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = Field(
        default="HS256",
        description="HMAC algorithm of access tokens; tokens signed with any other are refused.",
    )
    access_token_expire_minutes: int = Field(
        default=30, ge=1, le=1440, description="Access token lifetime in minutes."
    )
    first_admin_username: str | None = Field(
        default=None,
        description="With FIRST_ADMIN_PASSWORD: an admin account created at start-up when it is "
        "missing (safe with several workers).",
    )
    first_admin_password: SecretStr | None = Field(
        default=None, description="The first admin's password; unset: no account is created."
    )

    password_hash_concurrency: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Concurrent argon2 computations per worker; 1 leaves a core for reads on a "
        "2-core host.",
    )
    password_hash_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="Nice increment for the argon2 threads, so reads and the database get the CPU "
        "first during a login storm; 0 = same priority as requests.",
    )

    # Token lifecycle
    jwt_issuer: str = Field(
        default="employee-records-api",
        min_length=1,
        max_length=200,
        description="The `iss` claim written into and required of every token.",
    )
    jwt_audience: str = Field(
        default="employee-records-api",
        min_length=1,
        max_length=200,
        description="The `aud` claim written into and required of every token.",
    )
    refresh_token_expire_days: int = Field(
        default=7, ge=1, le=90, description="Refresh token lifetime in days."
    )

    # Concurrency and retries (conditional writes, idempotent creates)
    require_if_match: bool = Field(
        default=False,
        description="Refuse PUT/PATCH/DELETE on an employee without If-Match (428).",
    )
    idempotency_key_ttl_hours: int = Field(
        default=24, ge=1, le=24 * 30, description="How long an Idempotency-Key's answer is kept."
    )

    # Privacy
    employee_dob_visible_to: DobVisibleTo = Field(
        default="all",
        description="Who sees employees' emp_dob: all (every signed-in account), auditors "
        "(admins and auditors) or admins; for the others it is left out of records, lists, "
        "CSV exports and histories, and sorting by it is refused (403).",
    )

    @field_validator("jwt_secret_key")
    @classmethod
    def _refuse_weak_secret(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"must be at least {MIN_SECRET_LENGTH} characters long (it has {len(secret)})"
            )
        if secret.strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError("is a published placeholder; generate a random key")
        return value

    @field_validator("employee_dob_visible_to", mode="before")
    @classmethod
    def _lower_case_audience(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("first_admin_username", "first_admin_password", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


def describe_validation_error(error: ValidationError) -> str:
    """Name each bad variable and the rule it breaks, never its value (it may be a secret)."""
    lines = []
    for item in error.errors(include_input=False, include_url=False):
        variable = "_".join(str(part) for part in item["loc"]).upper()
        message = "is required (set it in the environment or in .env)"
        if item["type"] != "missing":
            message = item["msg"].removeprefix("Value error, ")
        lines.append(f"  {variable}: {message}")
    return "invalid configuration:\n" + "\n".join(lines)


@lru_cache
def get_settings() -> Settings:
    try:
        return Settings()  # type: ignore[call-arg]  # required values come from the environment
    except ValidationError as error:
        raise ConfigurationError(describe_validation_error(error)) from None


def request_settings(request: Request) -> Settings:
    """The settings the request's application was built with (`create_app(settings)`)."""
    settings: Settings = request.app.state.settings
    return settings


async def get_request_settings(request: Request) -> Settings:
    # async: FastAPI sends a plain `def` dependency to a worker thread on every request.
    return request_settings(request)


SettingsDep = Annotated[Settings, Depends(get_request_settings)]
