"""Account commands: `create-admin USERNAME`, `set-role USERNAME ROLE` and `purge-expired`."""

import asyncio
import sys
from typing import Annotated

import typer
from pydantic import TypeAdapter, ValidationError

from app.accounts import crud, service, token_crud
from app.accounts.access import Role
from app.accounts.history.models import EventActor
from app.accounts.keys import crud as keys_crud
from app.accounts.models import User, UserCreate, Username
from app.cli.common import BadInput, database, plural, run
from app.core.errors import ConflictError, NotFoundError, plain_message
from app.core.types import utc_now
from app.idempotency import crud as idempotency_crud
from app.security.passwords import hash_password


def check_username(username: str) -> str:
    try:
        return TypeAdapter(Username).validate_python(username)
    except ValidationError:
        raise BadInput(
            "the username must be 3 to 50 characters: letters, digits, '.', '_' or '-'"
        ) from None


def check_password(username: str, password: str) -> str:
    try:
        return UserCreate(username=username, password=password).password
    except ValidationError as error:
        (issue,) = error.errors(include_input=False, include_url=False)
        raise BadInput(f"the password is refused: {plain_message(issue['msg'])}") from None


# Who the account history names for changes made from the command line (no account acts).
CREATE_ADMIN = EventActor(user_id=None, username="cli:create-admin", request_id=None)
SET_ROLE = EventActor(user_id=None, username="cli:set-role", request_id=None)


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


async def _create_admin(username: str, *, from_stdin: bool, reset_password: bool) -> str:
    async with database() as sessionmaker, sessionmaker() as session:
        user = await crud.get_user_by_username(session=session, username=username)
        if user is None:
            password = check_password(username, read_password(from_stdin))
            hashed = await hash_password(password)
            try:
                await crud.create_user(
                    session=session, username=username, hashed_password=hashed, role=Role.admin
                )
            except ConflictError:
                raise BadInput(f"{username!r} was created meanwhile; run again") from None
            return f"Created admin {username!r}."
        hashed_new = None
        if reset_password:
            password = check_password(user.username, read_password(from_stdin))
            hashed_new = await hash_password(password)
        action = describe_promotion(user, reset=hashed_new is not None)
        await service.promote_to_admin(
            session=session, user=user, actor=CREATE_ADMIN, hashed_password=hashed_new
        )
        return action


def describe_promotion(user: User, *, reset: bool) -> str:
    done = []
    if not user.is_admin:
        done.append("promoted to admin")
    if not user.is_active:
        done.append("reactivated")
    if reset:
        done.append("password reset, existing sessions ended")
    if not done:
        return f"{user.username!r} is already an active admin; nothing changed."
    return f"Existing account {user.username!r}: {', '.join(done)}."


def create_admin(
    username: Annotated[
        str,
        typer.Argument(metavar="USERNAME", help="Account name (3..50 of letters, digits, ._-)."),
    ],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    reset_password: Annotated[
        bool,
        typer.Option("--reset-password", help="Also set a new password on an existing account."),
    ] = False,
) -> None:
    """Create an admin account, or promote and reactivate an existing one (any letter case)."""
    checked = run(lambda: check_username(username))
    message = run(
        lambda: asyncio.run(
            _create_admin(checked, from_stdin=password_stdin, reset_password=reset_password)
        )
    )
    typer.echo(message)


async def _set_role(username: str, role: Role) -> str:
    async with database() as sessionmaker, sessionmaker() as session:
        user = await crud.get_user_by_username(session=session, username=username)
        if user is None:
            raise BadInput(f"there is no account {username!r}")
        before = user.role
        try:
            await service.update_account(
                session=session, user=user, changes={"role": role}, actor=SET_ROLE
            )
        except (ConflictError, NotFoundError) as error:
            raise BadInput(error.detail) from None
        if before == role:
            return f"{user.username!r} is already {role}; nothing changed."
        return f"{user.username!r} is now {role} (was {before})."


def set_role(
    username: Annotated[str, typer.Argument(metavar="USERNAME", help="An existing account.")],
    role: Annotated[Role, typer.Argument(metavar="ROLE", help="admin, auditor or user.")],
) -> None:
    """Give an existing account a role: admin, auditor or user (recorded in its history).

    The last active admin keeps its role: promote another account first.
    """
    checked = run(lambda: check_username(username))
    typer.echo(run(lambda: asyncio.run(_set_role(checked, role))))


async def _purge_expired() -> tuple[int, int, int, int]:
    async with database() as sessionmaker, sessionmaker() as session:
        now = utc_now()
        tokens = await token_crud.delete_expired_refresh_tokens(session=session, now=now)
        sign_ins = await token_crud.delete_ended_sign_ins(session=session, now=now)
        api_keys = await keys_crud.delete_expired_api_keys(session=session, now=now)
        keys = await idempotency_crud.delete_expired_keys(session=session, now=now)
        return tokens, sign_ins, api_keys, keys


def purge_expired() -> None:
    """Delete every account's expired refresh tokens, ended sign-ins, expired API keys and
    expired idempotency keys (run it daily).

    Sign-ins, new keys and writes delete their own account's; this catches accounts that went
    quiet.
    """
    tokens, sign_ins, api_keys, keys = run(lambda: asyncio.run(_purge_expired()))
    tokens_deleted = plural(tokens, "expired refresh token")
    sign_ins_deleted = plural(sign_ins, "ended sign-in")
    api_keys_deleted = plural(api_keys, "expired API key")
    keys_deleted = plural(keys, "expired idempotency key")
    typer.echo(
        f"Deleted {tokens_deleted}, {sign_ins_deleted}, {api_keys_deleted} and {keys_deleted}."
    )
