"""DATABASE_POOL_MODE and DATABASE_DIRECT_URL: what they accept, what they change, and where
migrations connect. The same service through a real PgBouncer: tests/test_pgbouncer.py."""

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from app.core.config import ConfigurationError, DatabaseSettings, describe_validation_error
from app.db.pooling import pooler_connect_args
from tests.conftest import make_settings, require_postgres
from tests.pg import ROOT, PostgresServer, asyncpg_dsn
from tests.test_migrations import head_revision

PG = "postgresql+asyncpg://app:pw@db:5432/hr"
BOUNCER = "postgresql+asyncpg://app:pw@pgbouncer:6432/hr"


def database_settings(**values: Any) -> DatabaseSettings:
    return DatabaseSettings(_env_file=None, **values)  # type: ignore[call-arg]


def refusal(**values: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        database_settings(**values)
    return describe_validation_error(caught.value)


class TestSettings:
    def test_session_mode_is_the_default_and_has_no_direct_url(self) -> None:
        settings = database_settings(database_url=PG)
        assert (settings.database_pool_mode, settings.database_direct_url) == ("session", None)

    def test_transaction_mode_on_sqlite_is_refused_naming_the_variable(self) -> None:
        message = refusal(database_url="sqlite:///x.db", database_pool_mode="transaction")
        assert "DATABASE_POOL_MODE: transaction pooling (PgBouncer) needs a PostgreSQL" in message

    def test_an_unknown_mode_is_refused_with_the_choices(self) -> None:
        message = refusal(database_url=PG, database_pool_mode="statement")
        assert "DATABASE_POOL_MODE" in message and "'session' or 'transaction'" in message

    def test_the_mode_is_read_in_any_case(self) -> None:
        settings = database_settings(database_url=BOUNCER, database_pool_mode=" Transaction ")
        assert settings.database_pool_mode == "transaction"

    def test_the_direct_url_is_normalised_and_must_be_postgresql(self) -> None:
        settings = database_settings(
            database_url=BOUNCER, database_direct_url="postgresql://app:pw@db/hr"
        )
        assert settings.database_direct_url == "postgresql+asyncpg://app:pw@db/hr"
        for url in ("sqlite:///x.db", "mysql://db/hr"):
            message = refusal(database_url=PG, database_direct_url=url)
            assert "DATABASE_DIRECT_URL: must be a postgresql:// URL" in message
        message = refusal(database_url="sqlite:///x.db", database_direct_url=PG)
        assert "DATABASE_DIRECT_URL: is for PostgreSQL behind a pooler" in message

    def test_pooler_prepared_statements_need_transaction_pooling(self) -> None:
        assert database_settings(database_url=PG).database_pooler_prepared_statements is False
        message = refusal(database_url=PG, database_pooler_prepared_statements=True)
        assert "DATABASE_POOLER_PREPARED_STATEMENTS: only applies to DATABASE_POOL_MODE=" in message
        settings = database_settings(
            database_url=BOUNCER,
            database_pool_mode="transaction",
            database_pooler_prepared_statements="true",
        )
        assert settings.database_pooler_prepared_statements is True

    def test_the_environment_sets_both(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DATABASE_URL", BOUNCER)
        monkeypatch.setenv("DATABASE_POOL_MODE", "transaction")
        monkeypatch.setenv("DATABASE_DIRECT_URL", PG)
        settings = DatabaseSettings(_env_file=None)  # type: ignore[call-arg]
        assert (settings.database_pool_mode, settings.database_direct_url) == ("transaction", PG)


class TestSessionUrl:
    """Where a connection that keeps session state goes (migrations; LISTEN, if one comes)."""

    def test_the_direct_url_when_there_is_one(self) -> None:
        settings = database_settings(
            database_url=BOUNCER, database_pool_mode="transaction", database_direct_url=PG
        )
        assert settings.session_url("migrations") == PG

    def test_database_url_in_session_mode(self) -> None:
        assert database_settings(database_url=PG).session_url("migrations") == PG

    def test_transaction_mode_without_a_direct_url_is_a_configuration_error(self) -> None:
        settings = database_settings(database_url=BOUNCER, database_pool_mode="transaction")
        with pytest.raises(ConfigurationError, match="DATABASE_DIRECT_URL: migrations need a"):
            settings.session_url("migrations")


class TestDriverOptions:
    def test_session_mode_leaves_the_driver_as_it_was(self) -> None:
        assert pooler_connect_args(make_settings(PG)) == {}
        assert pooler_connect_args(make_settings("sqlite+aiosqlite://")) == {}

    def test_transaction_mode_turns_asyncpg_statement_cache_off(self) -> None:
        settings = make_settings(BOUNCER, database_pool_mode="transaction")
        assert pooler_connect_args(settings) == {"statement_cache_size": 0}

    def test_a_pooler_that_keeps_prepared_statements_keeps_the_cache_on(self) -> None:
        settings = make_settings(
            BOUNCER, database_pool_mode="transaction", database_pooler_prepared_statements=True
        )
        assert pooler_connect_args(settings) == {}


def alembic_upgrade(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`alembic upgrade head` with the database named by the environment alone, run outside the
    checkout so no `.env` is read."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
        cwd=cwd,
        env={**base, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# Port 1 on loopback refuses at once: a pooler the migrations must not need.
NO_POOLER = "postgresql://postgres@127.0.0.1:1/hr"


@pytest.mark.slow  # each runs alembic in a process of its own
class TestMigrationsGoPastThePooler:
    def test_without_a_direct_url_transaction_mode_refuses_to_migrate(self, tmp_path: Path) -> None:
        result = alembic_upgrade(
            {"DATABASE_URL": NO_POOLER, "DATABASE_POOL_MODE": "transaction"}, tmp_path
        )
        assert result.returncode != 0
        assert "DATABASE_DIRECT_URL: migrations (their advisory lock) need a session" in (
            result.stderr
        )

    def test_they_run_on_the_direct_url(
        self, tmp_path: Path, postgres_server: PostgresServer | None
    ) -> None:
        server = require_postgres(postgres_server)
        name = asyncio.run(server.create_database())
        try:
            env = {
                "DATABASE_URL": NO_POOLER,
                "DATABASE_POOL_MODE": "transaction",
                "DATABASE_DIRECT_URL": server.url_for(name),
            }
            result = alembic_upgrade(env, tmp_path)
            assert result.returncode == 0, result.stderr
            assert asyncio.run(versions(server.url_for(name))) == [head_revision()]
        finally:
            asyncio.run(server.drop_database(name))


async def versions(url: str) -> list[str]:
    connection = await asyncpg.connect(asyncpg_dsn(make_url(url)))
    try:
        return [row[0] for row in await connection.fetch("SELECT version_num FROM alembic_version")]
    finally:
        await connection.close()
