"""What readiness asks of the database: does it answer, and is its schema at the head revision."""

import asyncio
from dataclasses import dataclass
from functools import lru_cache

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import PROJECT_DIR

UNREACHABLE = "unreachable"
NOT_AT_HEAD = "not_at_head"
OK = "ok"

# A check abandoned on timeout finishes (or times out) on its own; a reference keeps it alive.
_abandoned: set["asyncio.Task[Readiness]"] = set()


@dataclass(frozen=True)
class Readiness:
    database: str
    migrations: str

    @property
    def ready(self) -> bool:
        return self.database == OK and self.migrations == OK


@lru_cache
def migration_heads() -> frozenset[str]:
    """The head revision(s) of the migrations shipped with this code, read once."""
    config = Config(str(PROJECT_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_DIR / "alembic"))
    return frozenset(ScriptDirectory.from_config(config).get_heads())


async def _check(sessionmaker: async_sessionmaker[AsyncSession]) -> Readiness:
    async with sessionmaker() as session:
        try:
            await session.execute(text("SELECT 1"))
        except (DBAPIError, OSError):
            return Readiness(database=UNREACHABLE, migrations="unknown")
        try:
            rows = await session.execute(text("SELECT version_num FROM alembic_version"))
        except DBAPIError:  # no version table: never migrated
            return Readiness(database=OK, migrations=NOT_AT_HEAD)
        applied = frozenset(rows.scalars())
    return Readiness(database=OK, migrations=OK if applied == migration_heads() else NOT_AT_HEAD)


async def check_readiness(
    sessionmaker: async_sessionmaker[AsyncSession], *, within: float
) -> Readiness:
    """Answer in `within` seconds even when the database hangs; a stalled check is left behind."""
    task = asyncio.ensure_future(_check(sessionmaker))
    done, _ = await asyncio.wait({task}, timeout=within)
    if task in done and task.exception() is None:
        return task.result()
    if task not in done:
        # Cancelling would still wait for the session's close on the stalled connection.
        _abandoned.add(task)
        task.add_done_callback(_abandoned.discard)
        task.add_done_callback(_consume)
    return Readiness(database=UNREACHABLE, migrations="unknown")


def _consume(task: "asyncio.Task[Readiness]") -> None:
    if not task.cancelled():
        task.exception()
