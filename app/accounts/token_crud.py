"""All SQL that touches sign-ins and refresh tokens (and the account's token version)."""

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, case, delete, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.accounts.crud import lock_user
from app.accounts.models import RefreshToken, SignIn, User
from app.core.types import UTCDateTime


async def get_refresh_token_by_hash(
    *, session: AsyncSession, token_hash: str
) -> RefreshToken | None:
    statement = select(RefreshToken).where(col(RefreshToken.token_hash) == token_hash)
    return (await session.execute(statement)).scalar_one_or_none()


def _ended(now: datetime) -> ColumnElement[bool]:
    """Sign-ins no token can use any more: revoked (the account check refuses a revoked one
    and a missing one alike), or past the last moment any of their tokens is accepted."""
    return or_(col(SignIn.revoked_at).is_not(None), col(SignIn.expires_at) <= now)


async def create_sign_in(
    *, session: AsyncSession, sign_in: SignIn, token: RefreshToken, now: datetime
) -> None:
    """Store a sign-in and its first refresh token, and delete the account's ended sign-ins
    (their refresh tokens go with them) and expired refresh tokens."""
    user_id = sign_in.user_id
    await session.execute(delete(SignIn).where(col(SignIn.user_id) == user_id, _ended(now)))
    await session.execute(
        delete(RefreshToken).where(
            col(RefreshToken.user_id) == user_id, col(RefreshToken.expires_at) <= now
        )
    )
    session.add(sign_in)
    await session.flush()  # the sign-in first: the token refers to it
    session.add(token)
    await session.commit()


async def rotate_refresh_token(
    *,
    session: AsyncSession,
    used: RefreshToken,
    successor: RefreshToken,
    accepted_until: datetime,
    now: datetime,
) -> bool:
    """Mark `used` spent, store its successor and keep its sign-in until `accepted_until`, or
    do nothing (False): the UPDATEs re-check every condition, so of two requests racing with
    one token exactly one matches, and a revoked sign-in gets no successor."""
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
    if result.rowcount != 1 or not await _extend_sign_in(session, used.family_id, accepted_until):
        await session.rollback()
        return False
    session.add(successor)
    await session.commit()
    return True


async def _extend_sign_in(session: AsyncSession, sign_in_id: uuid.UUID, until: datetime) -> bool:
    """Keep a live sign-in's row until `until` at least; False if it is revoked or gone."""
    expires_at = col(SignIn.expires_at)
    statement = (
        update(SignIn)
        .where(col(SignIn.id) == sign_in_id, col(SignIn.revoked_at).is_(None))
        .values(
            expires_at=case((expires_at > until, expires_at), else_=literal(until, UTCDateTime))
        )
        .execution_options(synchronize_session=False)
    )
    result = cast(CursorResult[Any], await session.execute(statement))
    return result.rowcount == 1


async def revoke_family(
    *, session: AsyncSession, user_id: uuid.UUID, family_id: uuid.UUID, now: datetime
) -> None:
    """End one sign-in, its access tokens (the account check reads the sign-in) and every
    refresh token, behind the account's lock: a refresh of this family under way commits its
    successor first, and these UPDATEs then see and revoke it."""
    await lock_user(session=session, user_id=user_id)
    await session.execute(
        update(SignIn)
        .where(col(SignIn.id) == family_id, col(SignIn.revoked_at).is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
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
    """Revoke the account's sign-ins and refresh tokens in the session's transaction (no
    commit), after the account row is locked: a refresh under way has then committed its
    successor. (Its access tokens are ended by the token version the caller bumps.)"""
    await session.execute(
        update(SignIn)
        .where(col(SignIn.user_id) == user_id, col(SignIn.revoked_at).is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
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


async def delete_ended_sign_ins(*, session: AsyncSession, now: datetime) -> int:
    """Every account's sign-ins that no token can use any more (a sign-in deletes only its own
    account's), their refresh tokens with them; how many sign-ins."""
    result = cast(CursorResult[Any], await session.execute(delete(SignIn).where(_ended(now))))
    await session.commit()
    return int(result.rowcount)
