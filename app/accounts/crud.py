"""All SQL that touches user accounts."""

import uuid
from typing import Any, NamedTuple, NoReturn, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    FromClause,
    Join,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from app.accounts.models import SignIn, User
from app.accounts.roles import Role
from app.core.errors import ConflictError, NotFoundError
from app.db.reader import Reader
from app.db.statements import Query, insert_or_skip

user_table = cast(Table, User.__table__)  # type: ignore[attr-defined]
LAST_ADMIN = "This is the last active administrator; promote another account first"


async def get_user(*, session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id, populate_existing=True)


async def lock_user(*, session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """The account, its row locked until the transaction ends (PostgreSQL; SQLite has one
    writer at a time). Whatever issues or revokes the account's tokens takes this lock first."""
    return await session.get(User, user_id, populate_existing=True, with_for_update=True)


class Access(NamedTuple):
    """What authorizing a request needs of an account, and of the token's sign-in."""

    id: uuid.UUID
    username: str
    role: str
    is_active: bool
    token_version: int
    # Last, and from sign_in (SIGNED_IN), not app_user: the token's sign-in is live.
    signed_in: bool


ACCESS_COLUMNS = Access._fields[:-1]  # app_user's: every field but signed_in
sign_in_table = cast(Table, SignIn.__table__)  # type: ignore[attr-defined]
SIGNED_IN = sign_in_table.c.id.is_not(None).label("signed_in")


def with_sign_in(accounts: FromClause) -> Join:
    """`accounts` (app_user first) and the token's sign-in, joined by its primary key if it is
    the account's and not revoked: otherwise SIGNED_IN is false, never a missing account row."""
    return accounts.outerjoin(
        sign_in_table,
        and_(
            sign_in_table.c.id == bindparam("sign_in_id"),
            sign_in_table.c.user_id == user_table.c.id,
            sign_in_table.c.revoked_at.is_(None),
        ),
    )


def role_columns(role: str) -> dict[str, Any]:
    """The columns that store a role ("admin", "auditor" or "user"): the one place that knows
    how."""
    return {"role": role}


def has_role(account: Access, role: str) -> bool:
    """Whether the account's row already stores this role."""
    return account.role == role


_ACCESS = Query(
    select(*[user_table.c[name] for name in ACCESS_COLUMNS], SIGNED_IN)
    .select_from(with_sign_in(user_table))
    .where(user_table.c.id == bindparam("user_id")),
    Access._make,
)


async def get_user_access(
    *, reader: Reader, user_id: uuid.UUID, sign_in_id: uuid.UUID | None
) -> Access | None:
    """The account's access columns: every request reads them, so no ORM instance is loaded
    and the statement runs on the driver directly (app.db.statements)."""
    return await reader.first(_ACCESS, user_id=user_id, sign_in_id=sign_in_id)


async def get_user_as(
    *, session: AsyncSession, user_id: uuid.UUID, sign_in_id: uuid.UUID | None
) -> tuple[User, Access] | None:
    """The account as an ORM instance, and its access columns, in the same one statement."""
    statement = (
        select(User, SIGNED_IN)
        .select_from(with_sign_in(user_table))
        .where(col(User.id) == bindparam("user_id"))
        .execution_options(populate_existing=True)
    )
    values = {"user_id": user_id, "sign_in_id": sign_in_id}
    row = (await session.execute(statement, values)).first()
    if row is None:
        return None
    user, signed_in = row
    return user, Access._make([*(getattr(user, name) for name in ACCESS_COLUMNS), signed_in])


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
    *, session: AsyncSession, username: str, hashed_password: str, role: Role = Role.user
) -> User:
    user = User(username=username, hashed_password=hashed_password, role=role.value)
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
    values = User(username=username, hashed_password=hashed_password, role=Role.admin).model_dump()
    statement = insert_or_skip(session, user_table).values(**values)
    result = cast(CursorResult[Any], await session.execute(statement))
    await session.commit()
    return bool(result.rowcount)


async def update_password_hash(*, session: AsyncSession, user: User, hashed_password: str) -> None:
    user.hashed_password = hashed_password
    session.add(user)
    await session.commit()


def _active_admin(user: Any = User) -> ColumnElement[bool]:
    return and_(col(user.role) == Role.admin.value, col(user.is_active))


def _leaves_an_active_admin(user_id: uuid.UUID) -> ColumnElement[bool]:
    """True unless the row is the only active admin: evaluated by the database, not from memory."""
    other = aliased(User)
    another = exists().where(_active_admin(other), col(other.id) != user_id)
    return or_(not_(_active_admin()), another)


async def _lock_active_admins(session: AsyncSession) -> None:
    # Two admins demoting each other at once would each see the other still in place (write
    # skew) and leave none. Locking every active admin row first, always in id order so two
    # lockers cannot deadlock, makes the second wait for the first and then see its result.
    # (SQLite has no FOR UPDATE: its one conditional UPDATE runs under its single write lock.)
    statement = select(col(User.id)).where(_active_admin()).order_by(col(User.id))
    await session.execute(statement.with_for_update())


async def _refuse_after_no_match(session: AsyncSession, user_id: uuid.UUID) -> NoReturn:
    await session.rollback()
    if await get_user(session=session, user_id=user_id) is None:
        raise NotFoundError("User not found")
    raise ConflictError(LAST_ADMIN)


class AccountState(NamedTuple):
    """What an admin's change or a deletion found: the account's history records it."""

    username: str
    role: str
    is_active: bool


def may_remove_an_admin(changes: dict[str, Any]) -> bool:
    """Whether the change could leave no active admin (it then waits for the admins' locks)."""
    demoted = changes.get("role", Role.admin) != Role.admin or changes.get("is_admin") is False
    return demoted or changes.get("is_active") is False


def _new_values(changes: dict[str, Any], role: str) -> dict[str, Any]:
    """The columns to write: `is_admin` as the role it stands for, given the current role."""
    values = {name: value for name, value in changes.items() if name != "is_admin"}
    if changes.get("is_admin") is True:
        values["role"] = Role.admin
    elif changes.get("is_admin") is False and role == Role.admin:
        values["role"] = Role.user  # false demotes an admin; other roles stay as they are
    if "role" in values:
        values["role"] = Role(values["role"]).value
    return values


async def update_user(
    *, session: AsyncSession, user: User, changes: dict[str, Any]
) -> tuple[AccountState, User]:
    """Apply an admin's change (`role`, `is_admin`, `is_active`) in the session's transaction
    (the caller commits); refuse (409) one that would leave no active admin. The account as it
    was, read under its row lock, and as it is now. A deactivation bumps the token version, so
    the account's sessions do not come back when it is reactivated."""
    statement = update(User).where(col(User.id) == user.id)
    if may_remove_an_admin(changes):
        await _lock_active_admins(session)
        statement = statement.where(_leaves_an_active_admin(user.id))
    current = await lock_user(session=session, user_id=user.id)
    if current is None:
        await _refuse_after_no_match(session, user.id)
    before = AccountState(current.username, current.role, current.is_active)
    values = _new_values(changes, current.role)
    if not values:
        return before, current  # `is_admin: false` for an account that is no admin
    if changes.get("is_active") is False:
        values["token_version"] = col(User.token_version) + 1
    statement = statement.values(**values).returning(User)
    result = await session.execute(statement.execution_options(populate_existing=True))
    updated: User | None = result.scalar_one_or_none()
    if updated is None:
        await _refuse_after_no_match(session, user.id)
    return before, updated


async def delete_user(*, session: AsyncSession, user: User) -> AccountState:
    """Delete an account (its refresh tokens go with it) in the session's transaction (the
    caller commits); never the last active admin (409). The account as it was deleted."""
    await _lock_active_admins(session)
    statement = (
        delete(User)
        .where(col(User.id) == user.id, _leaves_an_active_admin(user.id))
        .returning(col(User.username), col(User.role), col(User.is_active))
    )
    result = await session.execute(statement.execution_options(synchronize_session=False))
    deleted = result.first()
    if deleted is None:
        await _refuse_after_no_match(session, user.id)
    return AccountState._make(deleted)


def make_active_admin(user: User, hashed_password: str | None) -> None:
    """Promote and reactivate the account in the session (the caller commits); a new password
    bumps the token version, ending every access token issued before."""
    user.role = Role.admin.value
    user.is_active = True
    if hashed_password is not None:
        user.hashed_password = hashed_password
        user.token_version += 1
