"""Root pytest configuration: the PostgreSQL option and safe environment defaults.

Nothing here touches a real `.env`: tests build their own Settings, and the defaults below keep
an accidental `get_settings()` from reading a developer's configuration or database.
"""

import os

import pytest

TEST_ENV = {
    "JWT_SECRET_KEY": "test-only-secret-key-that-is-long-enough-0123456789",
    "DATABASE_URL": "sqlite+aiosqlite://",
}
for name, value in TEST_ENV.items():
    os.environ[name] = value
for name in ("FIRST_ADMIN_USERNAME", "FIRST_ADMIN_PASSWORD"):
    os.environ.pop(name, None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--postgres-url",
        default=os.environ.get("TEST_DATABASE_URL"),
        help="PostgreSQL URL (any database on the server; tests create and drop their own). "
        "Defaults to $TEST_DATABASE_URL; without it the PostgreSQL half of the suite is skipped.",
    )
