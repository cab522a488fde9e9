"""Alembic owns the schema: migrations reproduce the models exactly and downgrade cleanly."""

import asyncio
import warnings
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from app.models import metadata
from tests.conftest import require_postgres
from tests.pg import PostgresServer, alembic_config


async def inspect_database(url: str) -> tuple[list[Any], set[str], set[str]]:
    """(differences between the database and the models, table names, index names)."""
    engine = create_async_engine(url)

    def read(connection: Any) -> tuple[list[Any], set[str], set[str]]:
        with warnings.catch_warnings():
            # SQLite cannot reflect the lower(username) index, so autogenerate skips comparing
            # it there (PostgreSQL compares it); the index itself is checked by name below.
            warnings.filterwarnings("ignore", message=".*expression-based index.*")
            diff = compare_metadata(MigrationContext.configure(connection), metadata)
            inspector = inspect(connection)
            tables = set(inspector.get_table_names())
            indexes = {i["name"] for t in tables for i in inspector.get_indexes(t)}
        return diff, tables, indexes

    try:
        async with engine.connect() as connection:
            return await connection.run_sync(read)
    finally:
        await engine.dispose()


def check_round_trip(url: str, expected_indexes: set[str]) -> None:
    config = alembic_config(url)
    command.upgrade(config, "head")
    diff, tables, indexes = asyncio.run(inspect_database(url))
    assert diff == []
    assert tables == {"alembic_version", "app_user", "employee", "refresh_token"} | {
        "employee_audit",
        "idempotency_key",
    }
    assert expected_indexes <= indexes

    command.downgrade(config, "base")
    _, tables, _ = asyncio.run(inspect_database(url))
    assert tables == {"alembic_version"}

    command.upgrade(config, "head")
    diff, _, _ = asyncio.run(inspect_database(url))
    assert diff == []


SORT_INDEXES = {
    f"ix_employee_{column}_emp_id" for column in ("emp_name", "city", "country", "emp_dob")
}


def test_postgres_migrations_match_models_and_downgrade(postgres_server: PostgresServer | None):
    server = require_postgres(postgres_server)
    name = asyncio.run(server.create_database())
    try:
        check_round_trip(server.url_for(name), SORT_INDEXES | {"uq_app_user_username_lower"})
    finally:
        asyncio.run(server.drop_database(name))


def test_sqlite_migrations_match_models_and_downgrade(tmp_path: Path):
    check_round_trip(f"sqlite+aiosqlite:///{tmp_path / 'migrated.db'}", SORT_INDEXES)


def test_one_linear_history():
    script = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://"))
    assert len(script.get_heads()) == 1
    for revision in script.walk_revisions():
        assert revision.doc, f"revision {revision.revision} needs a message"


INSERT_USER = (
    "INSERT INTO app_user (id, username, hashed_password, is_admin, is_active, created_at)"
)


def test_username_uniqueness_is_case_insensitive_in_the_schema(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'u.db'}"
    command.upgrade(alembic_config(url), "head")

    async def insert_twice() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                await connection.exec_driver_sql(
                    f"{INSERT_USER} VALUES ('a', 'Alice', 'h', 0, 1, '2026-01-01')"
                )
            async with engine.begin() as connection:
                await connection.exec_driver_sql(
                    f"{INSERT_USER} VALUES ('b', 'ALICE', 'h', 0, 1, '2026-01-01')"
                )
        finally:
            await engine.dispose()

    with pytest.raises(IntegrityError, match="UNIQUE"):
        asyncio.run(insert_twice())
