"""Sign-up and sign-in rules, independent of HTTP."""

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import UnauthorizedError
from app.core.security import hash_password, verify_dummy_password, verify_password
from app.users import crud
from app.users.models import User, UserCreate

MAX_PASSWORD_LENGTH = 128
LOGIN_FAILED = "Incorrect username or password"


async def register_user(*, session: AsyncSession, data: UserCreate) -> User:
    hashed = await hash_password(data.password)
    return await crud.create_user(session=session, username=data.username, hashed_password=hashed)


async def authenticate(*, session: AsyncSession, username: str, password: str) -> User:
    """Return the active user these credentials belong to, or raise one indistinct 401.

    Unknown user, wrong password and inactive account cost the same work and give the same
    answer, so neither the body nor the timing tells which usernames exist.
    """
    if len(password) > MAX_PASSWORD_LENGTH or len(username) > 255:
        # Nothing that long was ever accepted at sign-up; refuse before spending a hash on it.
        raise UnauthorizedError(LOGIN_FAILED)
    user = await crud.get_user_by_username(session=session, username=username)
    if user is None:
        await verify_dummy_password(password)
        raise UnauthorizedError(LOGIN_FAILED)
    matches, new_hash = await verify_password(password, user.hashed_password)
    if not matches or not user.is_active:
        raise UnauthorizedError(LOGIN_FAILED)
    if new_hash is not None:
        await crud.update_password_hash(session=session, user=user, hashed_password=new_hash)
    return user
