"""All SQL that touches user accounts."""

import uuid
from typing import Any, cast

from sqlalchemy import CursorResult, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.core.errors import ConflictError
from app.users.models import User


async def get_user(*, session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id, populate_existing=True)


async def get_user_by_username(*, session: AsyncSession, username: str) -> User | None:
    statement = select(User).where(func.lower(User.username) == username.lower())
    return (await session.execute(statement)).scalar_one_or_none()


async def list_users(*, session: AsyncSession, offset: int, limit: int) -> tuple[list[User], int]:
    total = (await session.execute(select(func.count()).select_from(User))).scalar_one()
    statement = (
        select(User).order_by(col(User.created_at), col(User.id)).offset(offset).limit(limit)
    )
    return list((await session.execute(statement)).scalars()), total


async def create_user(
    *, session: AsyncSession, username: str, hashed_password: str, is_admin: bool = False
) -> User:
    user = User(username=username, hashed_password=hashed_password, is_admin=is_admin)
    session.add(user)
    try:
        await session.commit()
    except IntegrityError:
        # The unique index decides: a pre-check alone would let two racing sign-ups both pass.
        await session.rollback()
        raise ConflictError("Username is already taken") from None
    return user


async def create_admin_if_missing(
    *, session: AsyncSession, username: str, hashed_password: str
) -> bool:
    """Insert an admin unless the username exists; safe when several workers race to do it."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    values = User(username=username, hashed_password=hashed_password, is_admin=True).model_dump()
    statement = insert(User).values(**values).on_conflict_do_nothing()
    result = cast(CursorResult[Any], await session.execute(statement))
    await session.commit()
    return bool(result.rowcount)


async def update_password_hash(*, session: AsyncSession, user: User, hashed_password: str) -> None:
    user.hashed_password = hashed_password
    session.add(user)
    await session.commit()
