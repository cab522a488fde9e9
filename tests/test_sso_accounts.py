"""Single sign-on accounts: made on first use (one, even when the first requests race), found by
the provider's issuer and subject only, authorized by their row, which takes the role the
token maps to; deactivated like any other; no password."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts import sso_crud
from app.accounts.history.models import AccountEvent
from app.accounts.models import User
from app.accounts.service import NO_PASSWORD
from app.accounts.sso import mapped_role, username_candidates
from app.core.config import Settings
from app.db.engine import Database
from app.main import create_app
from app.models import metadata
from app.security.oidc import SsoIdentity
from tests.conftest import USER_PASSWORD, employee_payload, make_settings, running
from tests.pg import PostgresServer
from tests.sso_provider import (
    ROLE_MAP,
    Provider,
    running_provider,
    with_sso,
)

LOGIN_FAILED = {"detail": "Incorrect username or password"}
BAD_CREDENTIALS = {"detail": "Could not validate credentials"}
FORBIDDEN = {"detail": "Administrator privileges are required"}
Sessionmaker = async_sessionmaker[AsyncSession]


@pytest.fixture
def provider() -> Iterator[Provider]:
    with running_provider() as idp:
        yield idp


@pytest.fixture
def settings(settings: Settings, provider: Provider) -> Settings:
    return with_sso(settings, provider)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def me(client: AsyncClient, token: str) -> Response:
    return await client.get("/users/me", headers=bearer(token))


async def create_employee(client: AsyncClient, token: str, emp_id: int = 1001) -> Response:
    return await client.post(
        "/employees/", json=employee_payload(emp_id=emp_id), headers=bearer(token)
    )


async def account_events(sessionmaker: Sessionmaker) -> list[AccountEvent]:
    async with sessionmaker() as session:
        statement = select(AccountEvent).order_by(AccountEvent.id)  # type: ignore[arg-type]
        return list((await session.execute(statement)).scalars())


async def sso_users(sessionmaker: Sessionmaker) -> list[User]:
    async with sessionmaker() as session:
        statement = select(User).where(User.sso_subject.is_not(None))  # type: ignore[union-attr]
        return list((await session.execute(statement)).scalars())


class TestFirstUse:
    async def test_creates_one_account_without_a_password(self, client, provider, sessionmaker):
        first = await me(client, provider.token())
        again = await me(client, provider.token())
        assert first.json() == again.json()
        (user,) = await sso_users(sessionmaker)
        assert (user.sso_issuer, user.sso_subject) == (provider.issuer, provider.claims()["sub"])
        assert user.hashed_password is None
        assert (user.username, user.is_admin, user.is_active) == ("jane.sso", False, True)

    async def test_never_takes_over_a_local_account_of_that_name(
        self, client, provider, normal_user: User, sessionmaker
    ):
        response = await me(client, provider.token(preferred_username="Jane.Doe"))
        assert response.json()["username"] == "Jane.Doe-2"
        assert response.json()["id"] != str(normal_user.id)
        (user,) = await sso_users(sessionmaker)
        assert user.id != normal_user.id

    @pytest.mark.parametrize(
        ("preferred", "subject", "username"),
        [
            ("josé.garcía@example.com", "s-1", "jose.garcia_example.com"),
            (None, "00u1abcd", "sso-00u1abcd"),
            ("ab", "00u1abcd", "sso-00u1abcd"),
            ("日本", "AAAA-bbbb_cc", "sso-AAAA-bbbb_cc"),
            ("x" * 80, "s-1", "x" * 50),
            (12345, "s-1", "sso-s-1"),
        ],
    )
    async def test_the_username_is_made_valid(
        self, client, provider, preferred: Any, subject: str, username: str
    ):
        token = provider.token(preferred_username=preferred, sub=subject)
        assert (await me(client, token)).json()["username"] == username

    async def test_a_deleted_account_is_made_anew_on_next_use(
        self, client, admin_user_client, provider
    ):
        first = (await me(client, provider.token())).json()
        assert (await admin_user_client.delete(f"/users/{first['id']}")).status_code == 204
        second = (await me(client, provider.token())).json()
        assert second["id"] != first["id"]
        assert second["username"] == first["username"]


class TestDeactivation:
    async def test_a_deactivated_account_gets_401_until_reactivated(
        self, client, admin_user_client, provider
    ):
        user_id = (await me(client, provider.token())).json()["id"]
        update = await admin_user_client.patch(f"/users/{user_id}", json={"is_active": False})
        assert update.status_code == 200
        refused = await me(client, provider.token())
        assert (refused.status_code, refused.json()) == (401, BAD_CREDENTIALS)
        assert (
            await client.get("/employees/1", headers=bearer(provider.token()))
        ).status_code == 401
        await admin_user_client.patch(f"/users/{user_id}", json={"is_active": True})
        assert (await me(client, provider.token())).status_code == 200


class TestNoPassword:
    async def test_password_sign_in_is_refused_like_a_wrong_password(
        self, client, provider, normal_user: User
    ):
        await me(client, provider.token())
        sso = await client.post("/auth/token", data={"username": "jane.sso", "password": "x" * 9})
        wrong = await client.post(
            "/auth/token", data={"username": "jane.doe", "password": "not-the-password"}
        )
        assert (sso.status_code, sso.json()) == (401, LOGIN_FAILED)
        assert sso.content == wrong.content
        assert sso.headers["www-authenticate"] == wrong.headers["www-authenticate"]

    async def test_password_change_is_refused_clearly(self, client, provider):
        body = {"current_password": "anything-at-all", "new_password": "staple gun orbit lantern"}
        response = await client.post(
            "/users/me/password", json=body, headers=bearer(provider.token())
        )
        assert (response.status_code, response.json()) == (403, {"detail": NO_PASSWORD})

    async def test_local_sign_in_is_unchanged(self, client, normal_user: User):
        response = await client.post(
            "/auth/token", data={"username": "jane.doe", "password": USER_PASSWORD}
        )
        assert response.status_code == 200


class TestRoles:
    @pytest.mark.parametrize(
        ("roles", "status"),
        [
            (["HR.Admin"], 201),
            ("HR.Admin", 201),
            (["HR.Audit", "HR.Admin"], 201),
            (["HR.Audit"], 403),
            ([], 403),
            (["hr.admin", "Admin", "admin"], 403),  # the provider's names, exactly
            ({"HR.Admin": True}, 403),
            ([["HR.Admin"]], 403),
        ],
    )
    async def test_only_a_mapped_admin_writes(self, client, provider, roles: Any, status: int):
        response = await create_employee(client, provider.token(roles=roles))
        assert response.status_code == status
        if status == 403:
            assert response.json() == FORBIDDEN

    async def test_a_mapped_auditor_reads_accounts_and_histories_but_writes_nothing(
        self, client, provider, sessionmaker
    ):
        token = provider.token(roles=["HR.Audit"])
        assert (await client.get("/employees/", headers=bearer(token))).status_code == 200
        (user,) = await sso_users(sessionmaker)
        assert (user.role, user.is_admin) == ("auditor", False)
        assert (await client.get("/users/", headers=bearer(token))).status_code == 200
        history = await client.get(f"/users/{user.id}/history", headers=bearer(token))
        assert history.status_code == 200
        assert (await create_employee(client, token)).status_code == 403

    async def test_a_role_change_in_the_token_updates_the_row(self, client, provider, sessionmaker):
        assert (
            await create_employee(client, provider.token(roles=["HR.Admin"]))
        ).status_code == 201
        assert [u.role for u in await sso_users(sessionmaker)] == ["admin"]

        demoted = provider.token(roles=["HR.Audit"])
        assert (await create_employee(client, demoted, 1002)).status_code == 403
        assert [u.role for u in await sso_users(sessionmaker)] == ["auditor"]
        assert (await me(client, demoted)).json()["is_admin"] is False

        promoted = provider.token(roles=["HR.Admin"])
        assert (await create_employee(client, promoted, 1003)).status_code == 201
        # In the account's history, by the provider, in the requests that changed it.
        events = [(e.kind, e.changes, e.actor_username) for e in await account_events(sessionmaker)]
        by = "sso:identity-provider"
        assert events == [
            ("sso_first_sign_in", {"role": {"before": None, "after": "admin"}}, by),
            ("role_changed", {"role": {"before": "admin", "after": "auditor"}}, by),
            ("role_changed", {"role": {"before": "auditor", "after": "admin"}}, by),
        ]
        assert all(e.request_id for e in await account_events(sessionmaker))

    async def test_the_provider_s_word_wins_for_the_last_admin_too(
        self, client, provider, sessionmaker
    ):
        await me(client, provider.token(roles=["HR.Admin"]))
        await me(client, provider.token(roles=[]))
        assert [u.role for u in await sso_users(sessionmaker)] == ["user"]

    async def test_a_dotted_role_claim_reaches_into_an_object(self, app_with, provider):
        app = await app_with(oidc_role_claim="realm_access.roles")
        token = provider.token(realm_access={"roles": ["HR.Admin"]})
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
            assert (await create_employee(client, token)).status_code == 201

    async def test_a_local_admin_is_untouched_by_sso(self, admin_user_client, client, provider):
        await me(client, provider.token(roles=[]))
        assert (await admin_user_client.get("/users/me")).json()["is_admin"] is True


class TestRoleMapping:
    @pytest.mark.parametrize(
        ("values", "role"),
        [
            ((), "user"),
            (("HR.Audit",), "auditor"),
            (("HR.Admin", "HR.Audit"), "admin"),
            (("HR.Audit", "Other", "HR.Admin"), "admin"),
            (("Other",), "user"),
        ],
    )
    def test_the_highest_mapped_role_or_user(self, values: tuple[str, ...], role: str):
        assert mapped_role(values, ROLE_MAP) == role

    def test_username_candidates_stay_valid_and_distinct(self):
        identity = SsoIdentity("https://i", "sub", "y" * 50, (), 0.0)
        candidates = list(username_candidates(identity))
        assert len(set(candidates)) == len(candidates)
        assert all(3 <= len(name) <= 50 for name in candidates)
        assert candidates[1] == "y" * 48 + "-2"


class Gate:
    """Holds every lookup of an account until `n` have missed: the first requests of a new
    identity then all insert at once."""

    def __init__(self, n: int) -> None:
        self.expected, self.arrived, self.ready = n, 0, asyncio.Event()

    def wrap(self, lookup: Callable[..., Any]) -> Callable[..., Any]:
        async def held(**kwargs: Any) -> Any:
            found = await lookup(**kwargs)
            self.arrived += 1
            if self.arrived >= self.expected:
                self.ready.set()
            await asyncio.wait_for(self.ready.wait(), timeout=20)
            return found

        return held


@pytest.fixture
async def racing_app(
    backend: str,
    provider: Provider,
    tmp_path: Path,
    postgres_server: PostgresServer | None,
    postgres_template: str | None,
) -> AsyncIterator[tuple[Any, Sessionmaker]]:
    """An app on a database of its own with real connections: a SQLite file (writers take turns
    on its lock) or a private PostgreSQL database (rows locked by unique keys)."""
    private = None
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'race.db'}"
    else:
        assert postgres_server is not None and postgres_template is not None
        private = await postgres_server.create_database(template=postgres_template)
        url = postgres_server.url_for(private)
    settings = make_settings(url, **provider.settings())
    database = Database.from_settings(settings)
    if backend == "sqlite":
        async with database.engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
    try:
        async with running(create_app(settings, database=database)) as app:
            yield app, database.sessions
    finally:
        await database.engine.dispose()
        if private is not None and postgres_server is not None:
            await postgres_server.drop_database(private)


class TestConcurrentFirstUse:
    async def test_racing_first_requests_of_one_identity_make_one_account(
        self, racing_app, provider, monkeypatch
    ):
        app, sessionmaker = racing_app
        monkeypatch.setattr(sso_crud, "get_sso_access", Gate(10).wrap(sso_crud.get_sso_access))
        token = provider.token()
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
            responses = await asyncio.gather(*(me(client, token) for _ in range(10)))
        assert [r.status_code for r in responses] == [200] * 10
        assert len({r.json()["id"] for r in responses}) == 1
        assert len(await sso_users(sessionmaker)) == 1
        # One first sign-in in the account's history, by the request whose insert won.
        assert [e.kind for e in await account_events(sessionmaker)] == ["sso_first_sign_in"]

    async def test_racing_identities_of_one_name_get_distinct_usernames(
        self, racing_app, provider, monkeypatch
    ):
        app, sessionmaker = racing_app
        monkeypatch.setattr(sso_crud, "get_sso_access", Gate(10).wrap(sso_crud.get_sso_access))
        tokens = [provider.token(sub=str(uuid.uuid4())) for _ in range(10)]
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
            responses = await asyncio.gather(*(me(client, token) for token in tokens))
        assert [r.status_code for r in responses] == [200] * 10
        names = {r.json()["username"] for r in responses}
        assert len(names) == 10 and "jane.sso" in names and "jane.sso-2" in names
        assert len(await sso_users(sessionmaker)) == 10
