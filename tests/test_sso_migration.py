"""Revision 0010 (single sign-on accounts): one account per identity at the provider in the
schema itself, and a downgrade keeps those accounts, with a password no sign-in matches."""

import asyncio
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from app.security.passwords import verify_password
from tests.conftest import require_postgres
from tests.pg import PostgresServer, alembic_config

INSERT = text(
    "INSERT INTO app_user (id, username, hashed_password, role, is_active, created_at, "
    "token_version, sso_issuer, sso_subject) "
    "VALUES (:id, :username, NULL, :role, true, '2026-12-04', 0, 'https://idp', :subject)"
)
ID = "00000000-0000-4000-8000-0000000000{:02d}"


async def insert(url: str, number: int, username: str, subject: str, role: str = "user") -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            values = {"id": ID.format(number), "username": username, "subject": subject}
            await connection.execute(INSERT, {**values, "role": role})
    finally:
        await engine.dispose()


async def passwords(url: str) -> list[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(text("SELECT hashed_password FROM app_user"))
            return [row[0] for row in rows]
    finally:
        await engine.dispose()


def check(url: str) -> None:
    config = alembic_config(url)
    command.upgrade(config, "head")
    asyncio.run(insert(url, 1, "sso.one", "subject-1"))
    with pytest.raises(IntegrityError):
        asyncio.run(insert(url, 2, "sso.two", "subject-1"))
    with pytest.raises(IntegrityError):  # the roles' CHECK survives SQLite's table rebuild
        asyncio.run(insert(url, 3, "sso.three", "subject-3", role="root"))

    command.downgrade(config, "0009")
    (stored,) = asyncio.run(passwords(url))
    assert stored is not None
    assert asyncio.run(verify_password("!sso", stored)) == (False, None)
    command.upgrade(config, "head")


def test_sqlite(tmp_path: Path):
    check(f"sqlite+aiosqlite:///{tmp_path / 'sso.db'}")


def test_postgres(postgres_server: PostgresServer | None):
    server = require_postgres(postgres_server)
    name = asyncio.run(server.create_database())
    try:
        check(server.url_for(name))
    finally:
        asyncio.run(server.drop_database(name))
