"""Sign-up, sign-in and token lifecycle rules, independent of HTTP."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import crud, token_crud
from app.accounts.access import Principal
from app.accounts.crud import AccountState
from app.accounts.history import crud as history
from app.accounts.history import kinds
from app.accounts.history.models import EventActor
from app.accounts.keys import crud as key_crud
from app.accounts.models import RefreshToken, SignIn, User, UserCreate
from app.core.config import Settings
from app.core.context import current_request_id
from app.core.errors import ForbiddenError, UnauthorizedError
from app.core.types import utc_now
from app.security.passwords import hash_password, verify_dummy_password, verify_password
from app.security.tokens import create_access_token, create_refresh_token, hash_refresh_token

MAX_PASSWORD_LENGTH = 128
LOGIN_FAILED = "Incorrect username or password"
REFRESH_FAILED = "Invalid or expired refresh token"
WRONG_PASSWORD = "Current password is incorrect"  # noqa: S105 (a message, not a secret)
NO_PASSWORD = "This account signs in through single sign-on and has no password"  # noqa: S105


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


async def register_user(*, session: AsyncSession, data: UserCreate) -> User:
    hashed = await hash_password(data.password)
    return await crud.create_user(session=session, username=data.username, hashed_password=hashed)


async def authenticate(*, session: AsyncSession, username: str, password: str) -> User:
    """The active account these credentials belong to, or one indistinct 401: unknown user,
    wrong password and inactive account cost the same work and get the same answer."""
    if len(password) > MAX_PASSWORD_LENGTH or len(username) > 255:
        # Nothing that long was ever accepted at sign-up; refuse before spending a hash on it.
        raise UnauthorizedError(LOGIN_FAILED)
    user = await crud.get_user_by_username(session=session, username=username)
    if user is None or user.hashed_password is None:
        # Unknown, or an account of single sign-on (no password): a wrong password's work and
        # answer, so neither can be told apart from it.
        await verify_dummy_password(password)
        raise UnauthorizedError(LOGIN_FAILED)
    matches, new_hash = await verify_password(password, user.hashed_password)
    if not matches or not user.is_active:
        raise UnauthorizedError(LOGIN_FAILED)
    if new_hash is not None:
        await crud.update_password_hash(session=session, user=user, hashed_password=new_hash)
    return user


def _new_refresh_row(
    user: User, family_id: uuid.UUID, settings: Settings
) -> tuple[RefreshToken, str, int]:
    issued = create_refresh_token(settings)
    row = RefreshToken(
        user_id=user.id,
        family_id=family_id,
        token_version=user.token_version,
        token_hash=issued.token_hash,
        expires_at=issued.expires_at,
    )
    return row, issued.token, issued.expires_in


def _pair(
    user: User, refresh: RefreshToken, raw: str, expires_in: int, settings: Settings
) -> tuple[TokenPair, datetime]:
    """The tokens to hand out, and the last moment one of them is accepted."""
    access = create_access_token(
        user.id, settings, version=user.token_version, sign_in_id=refresh.family_id
    )
    pair = TokenPair(access.token, access.expires_in, raw, expires_in)
    return pair, max(refresh.expires_at, access.accepted_until)


async def start_session(*, session: AsyncSession, user: User, settings: Settings) -> TokenPair:
    """Start a sign-in: its access token and the first refresh token of its family."""
    sign_in_id = uuid.uuid4()
    row, raw, expires_in = _new_refresh_row(user, sign_in_id, settings)
    pair, accepted_until = _pair(user, row, raw, expires_in, settings)
    sign_in = SignIn(id=sign_in_id, user_id=user.id, expires_at=accepted_until)
    await token_crud.create_sign_in(session=session, sign_in=sign_in, token=row, now=utc_now())
    return pair


async def refresh_session(
    *, session: AsyncSession, refresh_token: str, settings: Settings
) -> TokenPair:
    """Trade a refresh token for a new pair in its family (RFC 9700 4.14): a token already used
    or revoked revokes the whole family."""
    now = utc_now()
    presented = await token_crud.get_refresh_token_by_hash(
        session=session, token_hash=hash_refresh_token(refresh_token)
    )
    if presented is None or presented.expires_at <= now:
        raise UnauthorizedError(REFRESH_FAILED)
    family_id, user_id = presented.family_id, presented.user_id
    if presented.used_at is not None or presented.revoked_at is not None:
        await token_crud.revoke_family(
            session=session, user_id=user_id, family_id=family_id, now=now
        )
        raise UnauthorizedError(REFRESH_FAILED)
    # Held until the successor is committed: a revocation of this account waits for it, then
    # sees it; one that came first bumped the version this token was issued under.
    user = await crud.lock_user(session=session, user_id=user_id)
    if user is None or not user.is_active or user.token_version != presented.token_version:
        await session.rollback()
        raise UnauthorizedError(REFRESH_FAILED)
    successor, raw, expires_in = _new_refresh_row(user, family_id, settings)
    pair, accepted_until = _pair(user, successor, raw, expires_in, settings)
    if not await token_crud.rotate_refresh_token(
        session=session,
        used=presented,
        successor=successor,
        accepted_until=accepted_until,
        now=now,
    ):
        # Another request spent this token between our read and our update (a reuse too), or
        # the sign-in was ended meanwhile.
        await token_crud.revoke_family(
            session=session, user_id=user_id, family_id=family_id, now=now
        )
        raise UnauthorizedError(REFRESH_FAILED)
    return pair


async def end_session(*, session: AsyncSession, refresh_token: str) -> None:
    """End the sign-in of this refresh token, its access tokens included; an unknown token is
    silently ignored."""
    presented = await token_crud.get_refresh_token_by_hash(
        session=session, token_hash=hash_refresh_token(refresh_token)
    )
    if presented is not None:
        await token_crud.revoke_family(
            session=session, user_id=presented.user_id, family_id=presented.family_id, now=utc_now()
        )


async def end_all_sessions(*, session: AsyncSession, user: User) -> None:
    await token_crud.revoke_all_sessions(session=session, user=user, now=utc_now())


async def change_password(
    *, session: AsyncSession, user: User, current_password: str, new_password: str
) -> None:
    """Replace the password after checking the current one; every token issued before dies."""
    if user.hashed_password is None:
        raise ForbiddenError(NO_PASSWORD)
    matches, _ = await verify_password(current_password, user.hashed_password)
    if not matches:
        raise ForbiddenError(WRONG_PASSWORD)
    hashed = await hash_password(new_password)
    await token_crud.revoke_all_sessions(
        session=session, user=user, now=utc_now(), hashed_password=hashed
    )


def acting(principal: Principal) -> EventActor:
    """The signed-in account as the actor of the events its request records."""
    return EventActor(principal.id, principal.username, current_request_id())


async def _record_changes(
    session: AsyncSession,
    user_id: uuid.UUID,
    before: AccountState,
    after: AccountState,
    actor: EventActor,
) -> None:
    """One event per kind of change the account went through (none when nothing changed)."""
    changed = (
        (kinds.ROLE_CHANGED, "role", before.role, after.role),
        (kinds.ACTIVATION_CHANGED, "is_active", before.is_active, after.is_active),
    )
    for kind, field, old, new in changed:
        if old != new:
            await history.record_account_event(
                session=session,
                account_id=user_id,
                account_username=after.username,
                kind=kind,
                actor=actor,
                changes={field: {"before": old, "after": new}},
            )


def _state(user: User) -> AccountState:
    return AccountState(user.username, user.role, user.is_active)


async def update_account(
    *, session: AsyncSession, user: User, changes: dict[str, Any], actor: EventActor
) -> User:
    """An admin's change to an account, with its history in the same transaction; a
    deactivation also ends every session it had and deletes its API keys (a reactivated account
    starts without them)."""
    if not changes:
        return user
    before, updated = await crud.update_user(session=session, user=user, changes=changes)
    await _record_changes(session, user.id, before, _state(updated), actor)
    if changes.get("is_active") is False:
        await token_crud.revoke_account_tokens(session=session, user_id=user.id, now=utc_now())
        await key_crud.delete_account_api_keys(session=session, user_id=user.id)
    await session.commit()
    return updated


async def delete_account(*, session: AsyncSession, user: User, actor: EventActor) -> None:
    """Delete an account; its history records what it was and stays readable."""
    deleted = await crud.delete_user(session=session, user=user)
    gone = {"role": deleted.role, "is_active": deleted.is_active}
    await history.record_account_event(
        session=session,
        account_id=user.id,
        account_username=deleted.username,
        kind=kinds.ACCOUNT_DELETED,
        actor=actor,
        changes={field: {"before": value, "after": None} for field, value in gone.items()},
    )
    await session.commit()


async def promote_to_admin(
    *, session: AsyncSession, user: User, actor: EventActor, hashed_password: str | None = None
) -> User:
    """Make an account an active admin, recorded in its history; a new password also ends
    every session it had."""
    await crud.lock_user(session=session, user_id=user.id)
    before = _state(user)
    crud.make_active_admin(user, hashed_password)
    session.add(user)
    await _record_changes(session, user.id, before, _state(user), actor)
    if hashed_password is not None:
        await token_crud.revoke_account_tokens(session=session, user_id=user.id, now=utc_now())
    await session.commit()
    return user
