"""All SQL of single sign-on accounts: found by the provider's (issuer, subject), made on first
use, their role stored as the provider's token maps it."""

import uuid
from typing import Any, cast

from sqlalchemy import CursorResult, and_, bindparam, not_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.crud import ACCESS_COLUMNS, Access, role_columns, user_table
from app.accounts.models import User
from app.db.reader import Reader
from app.db.statements import Query, insert_or_skip

# The provider's tokens have no sign-in here to end (signed_in: always true).
_SSO_ACCESS = Query(
    select(*[user_table.c[name] for name in ACCESS_COLUMNS], true().label("signed_in")).where(
        user_table.c.sso_issuer == bindparam("issuer"),
        user_table.c.sso_subject == bindparam("subject"),
    ),
    Access._make,
)


async def get_sso_access(*, reader: Reader, issuer: str, subject: str) -> Access | None:
    """The access columns of the account of this identity at the provider, if it has one."""
    return await reader.first(_SSO_ACCESS, issuer=issuer, subject=subject)


async def insert_sso_user(
    *, session: AsyncSession, issuer: str, subject: str, username: str, role: str
) -> tuple[Access | None, bool]:
    """Insert the identity's account, in the session's transaction (the caller commits), unless
    the identity or the username is taken: (its account, whether this call made it). The account
    may be another request's that got there first; None when only the username was taken.

    An insert that skips on conflict, then a read: on PostgreSQL a racing insert of the same
    identity waits for the first to commit and then skips; on SQLite writers take turns."""
    values = User(
        username=username,
        hashed_password=None,
        sso_issuer=issuer,
        sso_subject=subject,
        **role_columns(role),
    ).model_dump()
    statement = insert_or_skip(session, user_table).values(**values)
    result = cast(CursorResult[Any], await session.execute(statement))
    account = await _SSO_ACCESS.first(session, issuer=issuer, subject=subject)
    return account, bool(result.rowcount)


async def set_role(*, session: AsyncSession, user_id: uuid.UUID, role: str) -> bool:
    """Store the role unless the row has it already, in the session's transaction (the caller
    commits); whether this call changed it (of two racing requests, one does)."""
    columns = role_columns(role)
    unchanged = and_(*(user_table.c[name] == value for name, value in columns.items()))
    statement = (
        update(user_table).where(user_table.c.id == user_id, not_(unchanged)).values(**columns)
    )
    result = cast(CursorResult[Any], await session.execute(statement))
    return bool(result.rowcount)
