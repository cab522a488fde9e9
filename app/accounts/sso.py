"""Single sign-on accounts: the account an identity-provider token names, made on its first use
and kept in the role the provider gives it. The token itself is verified by app.security.oidc.

An account is found by the provider's (issuer, subject) only, never by its username: a local
account that happens to share a name is never taken over.
"""

import re
import secrets
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts import sso_crud
from app.accounts.access import CREDENTIALS_DETAIL
from app.accounts.crud import Access, has_role
from app.accounts.history import crud as history
from app.accounts.history import kinds
from app.accounts.history.models import EventActor
from app.core.context import current_request_id
from app.core.errors import ConflictError, UnauthorizedError
from app.core.sso_config import ROLES
from app.db.engine import Database
from app.security.oidc import SsoIdentity
from app.security.tokens import AccessClaims

# The username rules of app.accounts.models.Username.
MIN_USERNAME, MAX_USERNAME = 3, 50
_NOT_IN_USERNAMES = re.compile(r"[^A-Za-z0-9._-]+")
NUMBERED_TRIES = range(2, 10)
RANDOM_TRIES = 5
NO_FREE_USERNAME = "No free username for this account; ask an administrator"
# Who acted, in the account history, for what the provider's tokens change.
IDENTITY_PROVIDER = EventActor(user_id=None, username="sso:identity-provider", request_id=None)


def mapped_role(values: Iterable[str], role_map: Mapping[str, str]) -> str:
    """The service's role for the provider's role values: the highest one mapped, else user."""
    mapped = {role_map[value] for value in values if value in role_map}
    return max(mapped, key=ROLES.index, default="user")


def _clean(text: str) -> str:
    """The text in username letters: accents dropped, anything else replaced by `_`."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _NOT_IN_USERNAMES.sub("_", ascii_text).strip("_")


def username_candidates(identity: SsoIdentity) -> Iterator[str]:
    """preferred_username made valid (else one derived from the subject), then the same with a
    number, then with a random suffix: usernames are unique, ignoring case."""
    base = _clean(identity.preferred_username or "")
    if len(base) < MIN_USERNAME:
        base = "sso-" + (_clean(identity.subject) or secrets.token_hex(4))
    base = base[:MAX_USERNAME]
    yield base
    suffixes = [f"-{n}" for n in NUMBERED_TRIES]
    suffixes += [f"-{secrets.token_hex(3)}" for _ in range(RANDOM_TRIES)]
    for suffix in suffixes:
        yield base[: MAX_USERNAME - len(suffix)] + suffix


async def sso_claims(
    *, database: Database, identity: SsoIdentity, role_map: Mapping[str, str]
) -> AccessClaims:
    """The claims of the identity's account, as its own tokens would carry them: the account is
    made on first use and its row takes the role the token maps to; a deactivated one gets 401.
    The request then admits the account from its row, like any other."""
    role = mapped_role(identity.role_values, role_map)
    account = await sso_crud.get_sso_access(
        reader=database.reader, issuer=identity.issuer, subject=identity.subject
    )
    if account is None:
        account = await _first_use(database.sessions, identity, role)
    if not account.is_active:
        raise UnauthorizedError(CREDENTIALS_DETAIL)
    if not has_role(account, role):
        await _change_role(database.sessions, account, role)
    # No sign-in of ours: the provider's token lives until its `exp` or the account's deactivation.
    return AccessClaims(user_id=account.id, version=account.token_version, sign_in_id=None)


async def _first_use(
    sessionmaker: async_sessionmaker[AsyncSession], identity: SsoIdentity, role: str
) -> Access:
    async with sessionmaker() as session:
        for username in username_candidates(identity):
            account, created = await sso_crud.insert_sso_user(
                session=session,
                issuer=identity.issuer,
                subject=identity.subject,
                username=username,
                role=role,
            )
            if account is None:
                continue  # the username is another account's
            if created:
                await record_account_event(
                    session, account=account, kind=kinds.SSO_FIRST_SIGN_IN, role=role
                )
            await session.commit()
            return account
    raise ConflictError(NO_FREE_USERNAME)


async def _change_role(
    sessionmaker: async_sessionmaker[AsyncSession], account: Access, role: str
) -> None:
    async with sessionmaker() as session:
        if await sso_crud.set_role(session=session, user_id=account.id, role=role):
            await record_account_event(session, account=account, kind=kinds.ROLE_CHANGED, role=role)
        await session.commit()


async def record_account_event(
    session: AsyncSession, *, account: Access, kind: str, role: str
) -> None:
    """An account event caused by the identity provider, in the caller's transaction: the
    account as it was before (for a first sign-in, as made) and the role the provider gives it."""
    before = None if kind == kinds.SSO_FIRST_SIGN_IN else account.role
    await history.record_account_event(
        session=session,
        account_id=account.id,
        account_username=account.username,
        kind=kind,
        actor=replace(IDENTITY_PROVIDER, request_id=current_request_id()),
        changes={"role": {"before": before, "after": role}},
    )
