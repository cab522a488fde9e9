"""Throwaway PostgreSQL databases for tests: one migrated template, a fresh copy per test."""

import asyncio
import uuid
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL, make_url

ROOT = Path(__file__).resolve().parents[1]


def alembic_config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def asyncpg_dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresServer:
    """Creates and drops databases on the server a test URL points at."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url).set(drivername="postgresql+asyncpg")

    def url_for(self, database: str) -> str:
        return self.url.set(database=database).render_as_string(hide_password=False)

    async def _execute(self, sql: str) -> None:
        connection = await asyncpg.connect(asyncpg_dsn(self.url), timeout=10)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    async def create_database(self, *, template: str | None = None) -> str:
        name = f"emp_test_{uuid.uuid4().hex[:12]}"
        suffix = f" TEMPLATE {template}" if template else ""
        await self._execute(f'CREATE DATABASE "{name}"{suffix}')
        return name

    async def drop_database(self, name: str) -> None:
        await self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def create_migrated_template(self) -> str:
        name = asyncio.run(self.create_database())
        command.upgrade(alembic_config(self.url_for(name)), "head")
        return name

    def is_reachable(self) -> bool:
        try:
            asyncio.run(self._execute("SELECT 1"))
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        return True
