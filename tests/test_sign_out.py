"""Signing out ends that sign-in at once: its refresh tokens and its access tokens, on every route.

A sign-in (`POST /auth/token`) is a row in `sign_in`; its access tokens carry its id (`sid`) and
its refresh tokens are the family of that id. `POST /auth/logout` revokes it, and the account
check every request makes reads it in the same statement: a token of a revoked (or deleted)
sign-in gets the 401 a bad token gets. Other sign-ins, of the account or of others, carry on.
"""

import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import fastapi.routing
import pytest
from httpx import AsyncClient, Response
from jose import jwt
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts import token_crud
from app.accounts.models import RefreshToken, SignIn, User
from app.db.session import get_reader
from app.employees.models import Employee
from tests.conftest import ADMIN_PASSWORD, SECRET, USER_PASSWORD, employee_payload

BAD_CREDENTIALS = {"detail": "Could not validate credentials"}
Sessionmaker = async_sessionmaker[AsyncSession]


async def login(client: AsyncClient, username: str, password: str) -> dict[str, Any]:
    response = await client.post("/auth/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def admin_login(client: AsyncClient) -> dict[str, Any]:
    return await login(client, "root.admin", ADMIN_PASSWORD)


async def user_login(client: AsyncClient) -> dict[str, Any]:
    return await login(client, "jane.doe", USER_PASSWORD)


async def logout(client: AsyncClient, refresh_token: str) -> None:
    response = await client.post("/auth/logout", json={"refresh_token": refresh_token})
    assert response.status_code == 204, response.text


async def refresh(client: AsyncClient, refresh_token: str) -> Response:
    return await client.post("/auth/refresh", json={"refresh_token": refresh_token})


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


def refused(response: Response) -> bool:
    """The answer a bad token gets: 401, the one body, the Bearer challenge."""
    return (
        response.status_code == 401
        and response.json() == BAD_CREDENTIALS
        and response.headers["www-authenticate"] == "Bearer"
    )


async def get_one(client: AsyncClient, access_token: str, path: str = "/employees/7") -> Response:
    return await client.get(path, headers=bearer(access_token))


async def me(client: AsyncClient, access_token: str) -> Response:
    return await client.get("/users/me", headers=bearer(access_token))


async def stored_sign_ins(sessionmaker: Sessionmaker) -> list[SignIn]:
    async with sessionmaker() as session:
        statement = select(SignIn).order_by(SignIn.created_at)  # type: ignore[arg-type]
        return list((await session.execute(statement)).scalars())


async def stored_employees(sessionmaker: Sessionmaker) -> list[tuple[int, str, int]]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(Employee.emp_id, Employee.city, Employee.version).order_by(Employee.emp_id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


@pytest.fixture
async def stored(make_employees: Callable[..., Any]) -> Employee:
    (employee,) = await make_employees(employee_payload(emp_id=7))
    return employee  # type: ignore[no-any-return]


@pytest.fixture
def solves(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths for which FastAPI solved a route's dependencies (GET one's direct path does
    not: app.employees.read_route)."""
    seen: list[str] = []
    solve = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["request"].url.path)
        return await solve(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    return seen


NO_KEY = "00000000-0000-4000-8000-000000000000"  # an API key id nobody holds: a live call's 404
NO_HOOK = "00000000-0000-4000-8000-000000000001"  # likewise a webhook endpoint's
HOOK = {"url": "https://93.184.215.14/hook", "event_types": ["employee.created"]}
# Every route that needs a bearer token, as an admin would call it (so that no 403 hides the
# 401), with the answer a live sign-in gets. The writes are valid: only the sign-in stops them.
# "/employees/007" is not a plain id: FastAPI's handler serves it (app.employees.read_route).
ROUTES: list[tuple[str, str, dict[str, Any], int]] = [
    ("GET", "/employees/7", {}, 200),
    ("GET", "/employees/007", {}, 200),
    ("GET", "/v1/employees/7", {}, 200),
    ("GET", "/employees/7/history", {}, 200),
    ("GET", "/employees/", {}, 200),
    ("GET", "/employees/export.csv", {}, 200),
    ("GET", "/employees/changes", {}, 200),
    # The live stream never ends: a malformed position gets past the sign-in check, then 422.
    ("GET", "/employees/events?after=x", {}, 422),
    ("POST", "/employees/", {"json": employee_payload(emp_id=8)}, 201),
    ("PATCH", "/employees/7", {"json": {"city": "Paris"}}, 200),
    ("PUT", "/employees/7", {"json": employee_payload(emp_id=7, city="Oslo")}, 200),
    ("DELETE", "/employees/7", {}, 204),
    ("POST", "/employees/import", {"files": {"file": ("a.csv", b"", "text/csv")}}, 422),
    ("GET", "/users/", {}, 200),
    ("GET", "/users/me", {}, 200),
    ("GET", "/users/{jane}", {}, 200),
    ("GET", "/users/{jane}/history", {}, 200),
    ("PATCH", "/users/{jane}", {"json": {"is_admin": True}}, 200),
    ("DELETE", "/users/{jane}", {}, 204),
    ("POST", "/auth/logout-all", {}, 204),
    ("GET", "/users/me/api-keys", {}, 200),
    ("POST", "/users/me/api-keys", {"json": {"name": "sync", "scopes": ["employees:read"]}}, 201),
    ("DELETE", f"/users/me/api-keys/{NO_KEY}", {}, 404),
    ("GET", "/users/{jane}/api-keys", {}, 200),
    ("DELETE", f"/users/{{jane}}/api-keys/{NO_KEY}", {}, 404),
    ("GET", "/webhooks/", {}, 200),
    ("POST", "/webhooks/", {"json": HOOK}, 201),
    ("GET", f"/webhooks/{NO_HOOK}", {}, 404),
    ("PATCH", f"/webhooks/{NO_HOOK}", {"json": {"active": False}}, 404),
    ("DELETE", f"/webhooks/{NO_HOOK}", {}, 404),
    ("POST", f"/webhooks/{NO_HOOK}/rotate-secret", {}, 404),
    ("GET", f"/webhooks/{NO_HOOK}/deliveries", {}, 404),
    ("POST", f"/webhooks/{NO_HOOK}/deliveries/1/retry", {}, 404),
]


def operation(method: str, path: str) -> tuple[str, str]:
    """The OpenAPI operation a request of ROUTES calls."""
    path = path.split("?")[0].removeprefix("/v1")
    path = re.sub(r"^/employees/[0-9]+", "/employees/{emp_id}", path)
    path = re.sub(r"/deliveries/[0-9]+/", "/deliveries/{delivery_id}/", path)
    path = path.replace(NO_HOOK, "{endpoint_id}")
    return method, path.replace("{jane}", "{user_id}").replace(NO_KEY, "{key_id}")


async def test_every_route_that_takes_a_bearer_token_is_tried(app: Any) -> None:
    secured = {
        operation(method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method, described in operations.items()
        if described.get("security")
    }
    tried = {operation(method, path) for method, path, *_ in ROUTES}
    # A password change needs the current password: tests/test_token_lifecycle.py tries it.
    assert secured - tried == {("POST", "/users/me/password")}


class TestLogoutEndsTheAccessTokens:
    @pytest.mark.parametrize(("method", "path", "body", "live"), ROUTES, ids=lambda v: str(v))
    async def test_a_signed_out_token_gets_401_where_another_sign_in_succeeds(
        self,
        client: AsyncClient,
        admin_user: User,
        normal_user: User,
        stored: Employee,
        sessionmaker: Sessionmaker,
        method: str,
        path: str,
        body: dict[str, Any],
        live: int,
    ) -> None:
        path = path.replace("{jane}", str(normal_user.id))
        signed_out, other = await admin_login(client), await admin_login(client)
        await logout(client, signed_out["refresh_token"])
        before = (await stored_employees(sessionmaker), await stored_sign_ins(sessionmaker))
        garbage = await client.request(method, path, headers=bearer("not.a.token"), **body)

        response = await client.request(
            method, path, headers=bearer(signed_out["access_token"]), **body
        )

        assert refused(response), response.text
        assert (response.status_code, response.content) == (garbage.status_code, garbage.content)
        after = (await stored_employees(sessionmaker), await stored_sign_ins(sessionmaker))
        assert after == before  # nothing written, no sign-in ended
        # The control: the account's other sign-in, the very same request.
        response = await client.request(method, path, headers=bearer(other["access_token"]), **body)
        assert response.status_code == live, response.text

    async def test_get_one_direct_path_and_fastapi_handler_both_refuse(
        self,
        app: Any,
        client: AsyncClient,
        normal_user: User,
        stored: Employee,
        solves: list[str],
    ) -> None:
        tokens = await user_login(client)
        assert (await get_one(client, tokens["access_token"])).status_code == 200
        await logout(client, tokens["refresh_token"])
        solves.clear()

        direct = await get_one(client, tokens["access_token"])
        assert solves == []  # answered by ReadEmployeeRoute itself
        app.dependency_overrides[get_reader] = get_reader  # FastAPI's handler, the same reader
        try:
            standard = await get_one(client, tokens["access_token"])
        finally:
            del app.dependency_overrides[get_reader]

        assert solves == ["/employees/7"]
        assert refused(direct) and refused(standard)
        assert direct.content == standard.content

    async def test_a_token_refreshed_in_that_sign_in_dies_too(
        self, client: AsyncClient, normal_user: User, stored: Employee
    ) -> None:
        first = await user_login(client)
        second = (await refresh(client, first["refresh_token"])).json()
        third = (await refresh(client, second["refresh_token"])).json()
        for tokens in (first, second, third):
            assert (await get_one(client, tokens["access_token"])).status_code == 200

        await logout(client, third["refresh_token"])

        for tokens in (first, second, third):
            assert refused(await get_one(client, tokens["access_token"]))
            assert refused(await me(client, tokens["access_token"]))
        assert (await refresh(client, third["refresh_token"])).status_code == 401

    async def test_signing_out_with_a_spent_refresh_token_of_it_ends_it_too(
        self, client: AsyncClient, normal_user: User
    ) -> None:
        first = await user_login(client)
        second = (await refresh(client, first["refresh_token"])).json()

        await logout(client, first["refresh_token"])  # already spent by the refresh

        assert refused(await me(client, second["access_token"]))
        assert (await refresh(client, second["refresh_token"])).status_code == 401

    async def test_other_sign_ins_and_other_accounts_carry_on(
        self, client: AsyncClient, normal_user: User, admin_user: User, stored: Employee
    ) -> None:
        laptop, phone, admin = (
            await user_login(client),
            await user_login(client),
            await admin_login(client),
        )

        await logout(client, laptop["refresh_token"])

        assert refused(await get_one(client, laptop["access_token"]))
        for tokens in (phone, admin):
            assert (await get_one(client, tokens["access_token"])).status_code == 200
            assert (await me(client, tokens["access_token"])).status_code == 200
            renewed = await refresh(client, tokens["refresh_token"])
            assert renewed.status_code == 200
            assert (await get_one(client, renewed.json()["access_token"])).status_code == 200

    async def test_signing_in_again_gives_working_tokens(
        self, client: AsyncClient, normal_user: User, stored: Employee
    ) -> None:
        old = await user_login(client)
        await logout(client, old["refresh_token"])

        fresh = await user_login(client)

        assert (await get_one(client, fresh["access_token"])).status_code == 200
        assert refused(await get_one(client, old["access_token"]))

    async def test_an_unknown_refresh_token_ends_nothing(
        self, client: AsyncClient, normal_user: User, sessionmaker: Sessionmaker
    ) -> None:
        tokens = await user_login(client)

        await logout(client, "x" * 43)

        assert (await me(client, tokens["access_token"])).status_code == 200
        assert [row.revoked_at for row in await stored_sign_ins(sessionmaker)] == [None, None]

    async def test_a_replayed_refresh_token_ends_the_access_tokens_too(
        self, client: AsyncClient, normal_user: User
    ) -> None:
        """Reuse detection ends the whole sign-in (RFC 9700 4.14): the thief's access token
        and the legitimate client's alike."""
        first = await user_login(client)
        second = (await refresh(client, first["refresh_token"])).json()

        assert (await refresh(client, first["refresh_token"])).status_code == 401  # replayed

        assert refused(await me(client, first["access_token"]))
        assert refused(await me(client, second["access_token"]))

    async def test_the_database_holds_the_sign_in_revoked(
        self, client: AsyncClient, normal_user: User, sessionmaker: Sessionmaker
    ) -> None:
        ended, kept = await user_login(client), await user_login(client)

        await logout(client, ended["refresh_token"])

        sign_ins = await stored_sign_ins(sessionmaker)
        assert [row.user_id for row in sign_ins] == [normal_user.id] * 3  # with the standing one
        ended_id = uuid.UUID(jwt.get_unverified_claims(ended["access_token"])["sid"])
        kept_id = uuid.UUID(jwt.get_unverified_claims(kept["access_token"])["sid"])
        by_id = {row.id: row for row in sign_ins}
        assert by_id[ended_id].revoked_at is not None
        assert by_id[kept_id].revoked_at is None
        async with sessionmaker() as session:
            families = (await session.execute(select(RefreshToken.family_id))).scalars().all()
        assert set(families) == {ended_id, kept_id}


def legacy_token(user: User) -> str:
    """An access token as the service signed them before sign-ins had ids: no `sid`."""
    now = int(time.time())
    claims = {
        "iss": "employee-records-api",
        "aud": "employee-records-api",
        "sub": str(user.id),
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "type": "access",
        "ver": user.token_version,
    }
    return str(jwt.encode(claims, SECRET, algorithm="HS256"))


class TestTokensWithoutASignIn:
    """Tokens issued before this release carry no `sid`: they are refused, on every route, like
    a bad token (their holders refresh, or sign in, once; docs/security.md)."""

    @pytest.mark.parametrize(
        "path", ["/employees/7", "/employees/007", "/employees/", "/users/me", "/users/"]
    )
    async def test_a_token_without_sid_gets_401(
        self, client: AsyncClient, admin_user: User, stored: Employee, path: str
    ) -> None:
        response = await client.get(path, headers=bearer(legacy_token(admin_user)))

        assert refused(response), response.text

    async def test_the_same_claims_with_a_live_sign_in_are_accepted(
        self, client: AsyncClient, admin_user: User, stored: Employee
    ) -> None:
        # The control: only the missing `sid` made the difference above.
        claims = jwt.get_unverified_claims(legacy_token(admin_user)) | {"sid": str(admin_user.id)}
        token = jwt.encode(claims, SECRET, algorithm="HS256")

        assert (await get_one(client, token)).status_code == 200

    async def test_a_refresh_token_issued_before_gives_a_token_with_a_sign_in(
        self, client: AsyncClient, normal_user: User, sessionmaker: Sessionmaker
    ) -> None:
        """Refresh tokens from before keep working: the migration made each family a sign-in
        (alembic revision 0009), so the next refresh hands out an access token that works."""
        tokens = await user_login(client)
        family = uuid.UUID(jwt.get_unverified_claims(tokens["access_token"])["sid"])

        renewed = await refresh(client, tokens["refresh_token"])

        assert renewed.status_code == 200
        claims = jwt.get_unverified_claims(renewed.json()["access_token"])
        assert claims["sid"] == str(family)
        assert (await me(client, renewed.json()["access_token"])).status_code == 200


class TestEndedSignInsAreDeleted:
    async def test_a_sign_in_is_kept_as_long_as_its_newest_token(
        self, client: AsyncClient, normal_user: User, sessionmaker: Sessionmaker
    ) -> None:
        tokens = await user_login(client)
        (_, row) = await stored_sign_ins(sessionmaker)
        week = datetime.now(UTC) + timedelta(days=7)
        assert abs((row.expires_at - week).total_seconds()) < 60
        async with sessionmaker() as session:
            soon = datetime.now(UTC) + timedelta(minutes=1)
            await session.execute(update(SignIn).where(SignIn.id == row.id).values(expires_at=soon))  # type: ignore[arg-type]
            await session.commit()

        assert (await refresh(client, tokens["refresh_token"])).status_code == 200

        (_, row) = await stored_sign_ins(sessionmaker)
        assert abs((row.expires_at - week).total_seconds()) < 60  # the new refresh token's

    async def test_purge_deletes_ended_sign_ins_and_keeps_live_ones(
        self,
        client: AsyncClient,
        normal_user: User,
        admin_user: User,
        stored: Employee,
        sessionmaker: Sessionmaker,
    ) -> None:
        live = await user_login(client)
        signed_out = await user_login(client)
        expired = await user_login(client)
        # Its refresh tokens expired, but its newest access token is still accepted a while.
        lingering = await admin_login(client)
        await logout(client, signed_out["refresh_token"])
        now = datetime.now(UTC)
        sid = {
            name: uuid.UUID(jwt.get_unverified_claims(tokens["access_token"])["sid"])
            for name, tokens in (("expired", expired), ("lingering", lingering))
        }
        async with sessionmaker() as session:
            past, soon = now - timedelta(seconds=1), now + timedelta(minutes=10)
            for name, until in (("expired", past), ("lingering", soon)):
                await session.execute(
                    update(SignIn).where(SignIn.id == sid[name]).values(expires_at=until)  # type: ignore[arg-type]
                )
                await session.execute(
                    update(RefreshToken)
                    .where(RefreshToken.family_id == sid[name])  # type: ignore[arg-type]
                    .values(expires_at=past)
                )
            await session.commit()

        async with sessionmaker() as session:
            deleted = await token_crud.delete_ended_sign_ins(session=session, now=datetime.now(UTC))

        assert deleted == 2  # signed out, and expired
        remaining = {row.id for row in await stored_sign_ins(sessionmaker)}
        live_id = uuid.UUID(jwt.get_unverified_claims(live["access_token"])["sid"])
        assert remaining == {normal_user.id, admin_user.id, live_id, sid["lingering"]}
        async with sessionmaker() as session:
            count = select(func.count()).select_from(RefreshToken)
            assert (await session.execute(count)).scalar_one() == 2  # theirs went with them
        # What is left works; what is gone gets the 401 a revoked sign-in got.
        assert (await get_one(client, live["access_token"])).status_code == 200
        assert (await get_one(client, lingering["access_token"])).status_code == 200
        assert (await refresh(client, live["refresh_token"])).status_code == 200
        for tokens in (signed_out, expired):
            assert refused(await get_one(client, tokens["access_token"]))
            assert refused(await me(client, tokens["access_token"]))

    async def test_signing_in_deletes_the_accounts_ended_sign_ins(
        self, client: AsyncClient, normal_user: User, admin_user: User, sessionmaker: Sessionmaker
    ) -> None:
        mine, theirs = await user_login(client), await admin_login(client)
        await logout(client, mine["refresh_token"])
        await logout(client, theirs["refresh_token"])

        fresh = await user_login(client)

        ids = {row.id: row.revoked_at for row in await stored_sign_ins(sessionmaker)}
        fresh_id = uuid.UUID(jwt.get_unverified_claims(fresh["access_token"])["sid"])
        theirs_id = uuid.UUID(jwt.get_unverified_claims(theirs["access_token"])["sid"])
        assert set(ids) == {normal_user.id, admin_user.id, fresh_id, theirs_id}
        assert ids[theirs_id] is not None  # another account's: its own sign-in removes it
        assert refused(await me(client, mine["access_token"]))
