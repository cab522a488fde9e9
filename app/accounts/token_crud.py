"""All SQL that touches refresh tokens (and the account's token version)."""

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.accounts.crud import lock_user
from app.accounts.models import RefreshToken, User


async def get_refresh_token_by_hash(
    *, session: AsyncSession, token_hash: str
) -> RefreshToken | None:
    statement = select(RefreshToken).where(col(RefreshToken.token_hash) == token_hash)
    return (await session.execute(statement)).scalar_one_or_none()


async def create_refresh_token(
    *, session: AsyncSession, token: RefreshToken, now: datetime
) -> RefreshToken:
    """Store the first token of a sign-in and delete the account's expired ones."""
    await session.execute(
        delete(RefreshToken).where(
            col(RefreshToken.user_id) == token.user_id, col(RefreshToken.expires_at) <= now
        )
    )
    session.add(token)
    await session.commit()
    return token


async def rotate_refresh_token(
    *, session: AsyncSession, used: RefreshToken, successor: RefreshToken, now: datetime
) -> bool:
    """Mark `used` spent and store its successor, or do nothing (False): the UPDATE re-checks
    every condition, so of two requests racing with one token exactly one matches."""
    statement = (
        update(RefreshToken)
        .where(
            col(RefreshToken.id) == used.id,
            col(RefreshToken.used_at).is_(None),
            col(RefreshToken.revoked_at).is_(None),
            col(RefreshToken.expires_at) > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    result = cast(CursorResult[Any], await session.execute(statement))
    if result.rowcount != 1:
        await session.rollback()
        return False
    session.add(successor)
    await session.commit()
    return True


async def revoke_family(
    *, session: AsyncSession, user_id: uuid.UUID, family_id: uuid.UUID, now: datetime
) -> None:
    """Revoke every token of one sign-in, behind the account's lock: a refresh of this family
    under way commits its successor first, and this UPDATE then sees and revokes it."""
    await lock_user(session=session, user_id=user_id)
    statement = (
        update(RefreshToken)
        .where(col(RefreshToken.family_id) == family_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.execute(statement)
    await session.commit()


async def revoke_all_sessions(
    *, session: AsyncSession, user: User, now: datetime, hashed_password: str | None = None
) -> None:
    """Invalidate every token the account holds (access tokens by version, refresh tokens by
    row), with a new password hash when given, in one transaction; the account row is updated
    first, so a refresh under way finishes before its successor would escape."""
    values: dict[str, Any] = {"token_version": col(User.token_version) + 1}
    if hashed_password is not None:
        values["hashed_password"] = hashed_password
    await session.execute(
        update(User)
        .where(col(User.id) == user.id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    await revoke_account_tokens(session=session, user_id=user.id, now=now)
    await session.commit()


async def revoke_account_tokens(
    *, session: AsyncSession, user_id: uuid.UUID, now: datetime
) -> None:
    """Revoke the account's refresh tokens in the session's transaction (no commit), after the
    account row is locked: a refresh under way has then committed its successor."""
    await session.execute(
        update(RefreshToken)
        .where(col(RefreshToken.user_id) == user_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )


async def delete_expired_refresh_tokens(*, session: AsyncSession, now: datetime) -> int:
    """Every account's expired tokens (a sign-in deletes only its own account's); how many."""
    statement = delete(RefreshToken).where(col(RefreshToken.expires_at) <= now)
    result = cast(CursorResult[Any], await session.execute(statement))
    await session.commit()
    return int(result.rowcount)
