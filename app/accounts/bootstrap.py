"""Start-up tasks that touch data: creating the first admin."""

import asyncio
import logging

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts import crud
from app.core.config import Settings
from app.security.passwords import hash_password

logger = logging.getLogger(__name__)

# While the database is down, start-up keeps trying at this pace; readiness needs none of it.
RETRY_SECONDS = 1.0


class StartupError(RuntimeError):
    """A start-up task cannot run yet; the message says what to fix."""


def _first_line(error: BaseException) -> str:
    return str(getattr(error, "orig", None) or error).splitlines()[0]


async def ensure_first_admin(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Create FIRST_ADMIN_USERNAME as an admin when both variables are set and it is missing;
    several workers may race (an insert that skips on conflict)."""
    username, password = settings.first_admin_username, settings.first_admin_password
    if username is None or password is None:
        return
    try:
        async with sessionmaker() as session:
            if await crud.get_user_by_username(session=session, username=username) is not None:
                return
            hashed = await hash_password(password.get_secret_value())
            created = await crud.create_admin_if_missing(
                session=session, username=username, hashed_password=hashed
            )
    except (DBAPIError, OSError, PoolTimeoutError) as error:
        raise StartupError(
            "cannot create the first admin: the database is unreachable or not migrated "
            f"(run `alembic upgrade head`): {error.__class__.__name__}: {_first_line(error)}"
        ) from error
    if created:
        logger.info("created the first admin account %r", username)


async def start_first_admin(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    interval: float = RETRY_SECONDS,
) -> "asyncio.Task[None] | None":
    """Try once now; while the database is down or unmigrated, keep trying in the background
    (the caller cancels the task at shutdown)."""
    try:
        await ensure_first_admin(settings, sessionmaker)
    except StartupError as error:
        logger.warning("%s; retrying every %g s in the background", error, interval)
        return asyncio.create_task(_retry_first_admin(settings, sessionmaker, interval))
    return None


async def _retry_first_admin(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], interval: float
) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await ensure_first_admin(settings, sessionmaker)
        except StartupError:
            continue
        logger.info("the database is available: the first admin check is done")
        return
