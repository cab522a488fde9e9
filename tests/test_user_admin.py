"""Account management by admins: `GET`, `PATCH` and `DELETE /users/{user_id}`."""

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts import crud as users_crud
from app.accounts.crud import LAST_ADMIN
from app.accounts.models import RefreshToken, User
from app.employees.models import Employee
from app.main import create_app
from tests.conftest import USER_PASSWORD, employee_payload

USER_FIELDS = {"id", "username", "role", "is_admin", "is_active", "created_at"}
NOT_FOUND = {"detail": "User not found"}
FORBIDDEN = {"detail": "Administrator privileges are required"}
NOT_AN_AUDITOR = {"detail": "Administrator or auditor privileges are required"}
BAD_CREDENTIALS = {"detail": "Could not validate credentials"}
Sessionmaker = async_sessionmaker[AsyncSession]
MakeUser = Callable[..., Any]
ClientFor = Callable[[User], AsyncClient]


async def stored(sessionmaker: Sessionmaker, user_id: uuid.UUID) -> User | None:
    async with sessionmaker() as session:
        return await session.get(User, user_id)


async def active_admins(sessionmaker: Sessionmaker) -> list[str]:
    async with sessionmaker() as session:
        statement = select(User.username).where(User.role == "admin", User.is_active)  # type: ignore[arg-type]
        return sorted((await session.execute(statement)).scalars())


async def count(sessionmaker: Sessionmaker, model: Any, *where: Any) -> int:
    async with sessionmaker() as session:
        statement = select(func.count()).select_from(model).where(*where)
        return int((await session.execute(statement)).scalar_one())


async def sign_in(client: AsyncClient, username: str = "jane.doe") -> dict[str, Any]:
    response = await client.post(
        "/auth/token", data={"username": username, "password": USER_PASSWORD}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def assert_no_secret(response: Response, user: User) -> None:
    assert user.hashed_password not in response.text
    assert "password" not in response.text


class TestReadUser:
    async def test_admin_reads_any_account(
        self, admin_user_client: AsyncClient, normal_user: User
    ) -> None:
        response = await admin_user_client.get(f"/users/{normal_user.id}")

        assert response.status_code == 200
        body = response.json()
        assert set(body) == USER_FIELDS
        assert body["id"] == str(normal_user.id)
        assert (body["username"], body["is_admin"], body["is_active"]) == ("jane.doe", False, True)
        assert_no_secret(response, normal_user)

    async def test_regular_user_gets_403(
        self, normal_user_client: AsyncClient, normal_user: User
    ) -> None:
        response = await normal_user_client.get(f"/users/{normal_user.id}")

        assert response.status_code == 403
        assert response.json() == NOT_AN_AUDITOR

    async def test_anonymous_gets_401(self, client: AsyncClient, normal_user: User) -> None:
        response = await client.get(f"/users/{normal_user.id}")

        assert response.status_code == 401
        assert response.json() == {"detail": "Not authenticated"}
        assert response.headers["www-authenticate"] == "Bearer"

    async def test_unknown_id_gets_404(self, admin_user_client: AsyncClient) -> None:
        response = await admin_user_client.get(f"/users/{uuid.uuid4()}")

        assert response.status_code == 404
        assert response.json() == NOT_FOUND

    @pytest.mark.parametrize("method", ["get", "patch", "delete"])
    @pytest.mark.parametrize(
        "user_id", ["42", "not-a-uuid", "7d0f4c1e-4b0a-4a53-9a55-1f1ad6f6f1bz"]
    )
    async def test_invalid_id_gets_422(
        self, admin_user_client: AsyncClient, method: str, user_id: str
    ) -> None:
        kwargs = {"json": {"is_admin": True}} if method == "patch" else {}
        response = await admin_user_client.request(method, f"/users/{user_id}", **kwargs)

        assert response.status_code == 422
        assert [item["loc"] for item in response.json()["detail"]] == [["path", "user_id"]]


class TestUpdateUser:
    async def test_promoted_user_can_write_at_once(
        self,
        admin_user_client: AsyncClient,
        normal_user: User,
        client_for: ClientFor,
        sessionmaker: Sessionmaker,
    ) -> None:
        async with client_for(normal_user) as user_client:
            before = await user_client.post("/employees/", json=employee_payload())
            response = await admin_user_client.patch(
                f"/users/{normal_user.id}", json={"is_admin": True}
            )
            after = await user_client.post("/employees/", json=employee_payload())

        assert before.status_code == 403
        assert response.status_code == 200
        body = response.json()
        assert set(body) == USER_FIELDS
        assert (body["id"], body["is_admin"], body["is_active"]) == (
            str(normal_user.id),
            True,
            True,
        )
        assert_no_secret(response, normal_user)
        assert after.status_code == 201
        row = await stored(sessionmaker, normal_user.id)
        assert row is not None and row.is_admin is True

    async def test_demoted_admin_gets_403_on_writes_at_once(
        self,
        admin_user_client: AsyncClient,
        make_user: MakeUser,
        client_for: ClientFor,
        sessionmaker: Sessionmaker,
    ) -> None:
        other = await make_user("second.admin", is_admin=True)
        async with client_for(other) as other_client:
            before = await other_client.post("/employees/", json=employee_payload(1))
            response = await admin_user_client.patch(f"/users/{other.id}", json={"is_admin": False})
            after = await other_client.post("/employees/", json=employee_payload(2))
            still_reads = await other_client.get("/employees/")

        assert before.status_code == 201
        assert response.status_code == 200
        assert response.json()["is_admin"] is False
        assert after.status_code == 403
        assert after.json() == FORBIDDEN
        assert still_reads.status_code == 200
        assert await count(sessionmaker, Employee) == 1
        assert await active_admins(sessionmaker) == ["root.admin"]

    async def test_deactivated_users_tokens_get_401_at_once(
        self,
        admin_user_client: AsyncClient,
        normal_user: User,
        client_for: ClientFor,
        sessionmaker: Sessionmaker,
    ) -> None:
        async with client_for(normal_user) as user_client:
            before = await user_client.get("/users/me")
            response = await admin_user_client.patch(
                f"/users/{normal_user.id}", json={"is_active": False}
            )
            after = await user_client.get("/users/me")

        assert before.status_code == 200
        assert response.status_code == 200
        assert (response.json()["is_active"], response.json()["is_admin"]) == (False, False)
        assert after.status_code == 401
        assert after.json() == BAD_CREDENTIALS
        assert after.headers["www-authenticate"] == "Bearer"
        row = await stored(sessionmaker, normal_user.id)
        assert row is not None and row.is_active is False

    async def test_reactivation_allows_sign_in_but_revives_no_old_session(
        self,
        admin_user_client: AsyncClient,
        client: AsyncClient,
        normal_user: User,
        sessionmaker: Sessionmaker,
    ) -> None:
        old = await sign_in(client)
        path = f"/users/{normal_user.id}"

        off = await admin_user_client.patch(path, json={"is_active": False})
        refused = await client.post(
            "/auth/token", data={"username": "jane.doe", "password": USER_PASSWORD}
        )
        on = await admin_user_client.patch(path, json={"is_active": True})
        old_access = await client.get(
            "/users/me", headers={"Authorization": f"Bearer {old['access_token']}"}
        )
        old_refresh = await client.post(
            "/auth/refresh", json={"refresh_token": old["refresh_token"]}
        )
        fresh = await sign_in(client)

        assert (off.status_code, refused.status_code, on.status_code) == (200, 401, 200)
        assert on.json()["is_active"] is True
        assert old_access.status_code == 401
        assert old_refresh.status_code == 401
        assert fresh["access_token"]
        live = RefreshToken.user_id == normal_user.id, RefreshToken.revoked_at.is_(None)  # type: ignore[union-attr]
        assert await count(sessionmaker, RefreshToken, *live) == 1  # only the fresh sign-in

    async def test_only_the_fields_sent_change(
        self, admin_user_client: AsyncClient, make_user: MakeUser, sessionmaker: Sessionmaker
    ) -> None:
        other = await make_user("second.admin", is_admin=True)

        response = await admin_user_client.patch(f"/users/{other.id}", json={"is_active": False})
        empty = await admin_user_client.patch(f"/users/{other.id}", json={})

        assert response.status_code == 200
        assert (response.json()["is_admin"], response.json()["is_active"]) == (True, False)
        assert empty.status_code == 200
        assert empty.json() == response.json()
        row = await stored(sessionmaker, other.id)
        assert row is not None and (row.is_admin, row.is_active) == (True, False)

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"is_admin": None}, "is_admin"),
            ({"is_active": None}, "is_active"),
            ({"is_admin": "yes"}, "is_admin"),
            ({"is_admin": "true"}, "is_admin"),
            ({"is_admin": 1}, "is_admin"),
            ({"is_active": 0}, "is_active"),
            ({"is_admin": True, "username": "renamed"}, "username"),
            ({"hashed_password": "x"}, "hashed_password"),
            ({"token_version": 0}, "token_version"),
        ],
    )
    async def test_invalid_body_gets_422_and_changes_nothing(
        self,
        admin_user_client: AsyncClient,
        normal_user: User,
        sessionmaker: Sessionmaker,
        body: dict[str, Any],
        field: str,
    ) -> None:
        response = await admin_user_client.patch(f"/users/{normal_user.id}", json=body)

        assert response.status_code == 422
        assert [item["loc"] for item in response.json()["detail"]] == [["body", field]]
        row = await stored(sessionmaker, normal_user.id)
        assert row is not None
        assert (row.username, row.is_admin, row.is_active) == ("jane.doe", False, True)

    async def test_non_object_body_gets_422(
        self, admin_user_client: AsyncClient, normal_user: User
    ) -> None:
        response = await admin_user_client.patch(f"/users/{normal_user.id}", json=[True])

        assert response.status_code == 422

    async def test_regular_user_gets_403_and_cannot_promote_themself(
        self, normal_user_client: AsyncClient, normal_user: User, sessionmaker: Sessionmaker
    ) -> None:
        response = await normal_user_client.patch(
            f"/users/{normal_user.id}", json={"is_admin": True}
        )

        assert response.status_code == 403
        assert response.json() == FORBIDDEN
        row = await stored(sessionmaker, normal_user.id)
        assert row is not None and row.is_admin is False

    async def test_anonymous_gets_401(self, client: AsyncClient, normal_user: User) -> None:
        response = await client.patch(f"/users/{normal_user.id}", json={"is_admin": True})

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"

    async def test_unknown_id_gets_404(self, admin_user_client: AsyncClient) -> None:
        response = await admin_user_client.patch(f"/users/{uuid.uuid4()}", json={"is_admin": False})

        assert response.status_code == 404
        assert response.json() == NOT_FOUND


class TestLastActiveAdmin:
    @pytest.mark.parametrize(
        "body", [{"is_admin": False}, {"is_active": False}, {"is_admin": False, "is_active": False}]
    )
    async def test_last_admin_cannot_demote_or_deactivate_themself(
        self,
        admin_user_client: AsyncClient,
        admin_user: User,
        make_user: MakeUser,
        sessionmaker: Sessionmaker,
        body: dict[str, bool],
    ) -> None:
        # An inactive admin does not count: it cannot sign in to manage anything.
        await make_user("dormant.admin", is_admin=True, is_active=False)

        response = await admin_user_client.patch(f"/users/{admin_user.id}", json=body)
        still_works = await admin_user_client.get("/users/me")

        assert response.status_code == 409
        assert response.json() == {"detail": LAST_ADMIN}
        assert still_works.status_code == 200
        row = await stored(sessionmaker, admin_user.id)
        assert row is not None and (row.is_admin, row.is_active) == (True, True)
        assert row.token_version == admin_user.token_version

    async def test_last_admin_cannot_delete_themself(
        self, admin_user_client: AsyncClient, admin_user: User, sessionmaker: Sessionmaker
    ) -> None:
        response = await admin_user_client.delete(f"/users/{admin_user.id}")

        assert response.status_code == 409
        assert response.json() == {"detail": LAST_ADMIN}
        assert await active_admins(sessionmaker) == ["root.admin"]

    async def test_keeping_admin_rights_is_not_a_conflict(
        self, admin_user_client: AsyncClient, admin_user: User
    ) -> None:
        response = await admin_user_client.patch(
            f"/users/{admin_user.id}", json={"is_admin": True, "is_active": True}
        )

        assert response.status_code == 200
        assert response.json()["is_admin"] is True

    async def test_admin_may_step_down_while_another_remains(
        self,
        admin_user_client: AsyncClient,
        admin_user: User,
        make_user: MakeUser,
        sessionmaker: Sessionmaker,
    ) -> None:
        await make_user("second.admin", is_admin=True)

        response = await admin_user_client.patch(
            f"/users/{admin_user.id}", json={"is_admin": False}
        )
        after = await admin_user_client.post("/employees/", json=employee_payload())

        assert response.status_code == 200
        assert response.json()["is_admin"] is False
        assert after.status_code == 403
        assert await active_admins(sessionmaker) == ["second.admin"]

    async def test_admin_may_deactivate_themself_while_another_remains(
        self,
        admin_user_client: AsyncClient,
        admin_user: User,
        make_user: MakeUser,
        sessionmaker: Sessionmaker,
    ) -> None:
        await make_user("second.admin", is_admin=True)

        response = await admin_user_client.patch(
            f"/users/{admin_user.id}", json={"is_active": False}
        )
        after = await admin_user_client.get("/users/me")

        assert response.status_code == 200
        assert after.status_code == 401
        assert await active_admins(sessionmaker) == ["second.admin"]

    async def test_inactive_admin_may_be_demoted_by_the_last_active_one(
        self, admin_user_client: AsyncClient, make_user: MakeUser, sessionmaker: Sessionmaker
    ) -> None:
        dormant = await make_user("dormant.admin", is_admin=True, is_active=False)

        demoted = await admin_user_client.patch(f"/users/{dormant.id}", json={"is_admin": False})
        deleted = await admin_user_client.delete(f"/users/{dormant.id}")

        assert (demoted.status_code, deleted.status_code) == (200, 204)
        assert await stored(sessionmaker, dormant.id) is None
        assert await active_admins(sessionmaker) == ["root.admin"]


class TestDeleteUser:
    async def test_deletes_the_account_and_its_sessions_but_not_employees(
        self,
        admin_user_client: AsyncClient,
        client: AsyncClient,
        normal_user: User,
        client_for: ClientFor,
        make_employees: Callable[..., Any],
        sessionmaker: Sessionmaker,
    ) -> None:
        await make_employees({"emp_id": 1}, {"emp_id": 2})
        tokens = await sign_in(client)
        async with client_for(normal_user) as user_client:
            before = await user_client.get("/users/me")
            response = await admin_user_client.delete(f"/users/{normal_user.id}")
            after = await user_client.get("/users/me")
        refreshed = await client.post(
            "/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )

        assert before.status_code == 200
        assert response.status_code == 204
        assert response.content == b""
        assert after.status_code == 401
        assert after.json() == BAD_CREDENTIALS
        assert refreshed.status_code == 401
        assert await stored(sessionmaker, normal_user.id) is None
        assert await count(sessionmaker, RefreshToken) == 0  # ON DELETE CASCADE
        assert await count(sessionmaker, Employee) == 2
        listed = await admin_user_client.get("/users/")
        assert [u["username"] for u in listed.json()] == ["root.admin"]

    async def test_deleting_twice_gets_404(
        self, admin_user_client: AsyncClient, normal_user: User
    ) -> None:
        first = await admin_user_client.delete(f"/users/{normal_user.id}")
        second = await admin_user_client.delete(f"/users/{normal_user.id}")

        assert first.status_code == 204
        assert second.status_code == 404
        assert second.json() == NOT_FOUND

    async def test_admin_may_delete_themself_while_another_remains(
        self,
        admin_user_client: AsyncClient,
        admin_user: User,
        make_user: MakeUser,
        sessionmaker: Sessionmaker,
    ) -> None:
        await make_user("second.admin", is_admin=True)

        response = await admin_user_client.delete(f"/users/{admin_user.id}")
        after = await admin_user_client.get("/users/me")

        assert response.status_code == 204
        assert after.status_code == 401
        assert await active_admins(sessionmaker) == ["second.admin"]

    async def test_regular_user_gets_403(
        self,
        normal_user_client: AsyncClient,
        admin_user: User,
        sessionmaker: Sessionmaker,
    ) -> None:
        response = await normal_user_client.delete(f"/users/{admin_user.id}")

        assert response.status_code == 403
        assert response.json() == FORBIDDEN
        assert await stored(sessionmaker, admin_user.id) is not None

    async def test_anonymous_gets_401(
        self, client: AsyncClient, normal_user: User, sessionmaker: Sessionmaker
    ) -> None:
        response = await client.delete(f"/users/{normal_user.id}")

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert await stored(sessionmaker, normal_user.id) is not None

    async def test_unknown_id_gets_404(self, admin_user_client: AsyncClient) -> None:
        response = await admin_user_client.delete(f"/users/{uuid.uuid4()}")

        assert response.status_code == 404
        assert response.json() == NOT_FOUND


class WriteGate:
    """Holds each admin write, once authorized, until `n` of them are ready: they truly race.

    Without it a busy machine may finish one request before the next is even authorized; that
    one is then refused for lost rights (403) and nothing races at all.
    """

    def __init__(self) -> None:
        self.expect(1)

    def expect(self, n: int) -> None:
        self.expected, self.arrived, self.ready = n, 0, asyncio.Event()

    def wrap(self, write: Callable[..., Any]) -> Callable[..., Any]:
        async def held(**kwargs: Any) -> Any:
            self.arrived += 1
            if self.arrived >= self.expected:
                self.ready.set()
            await asyncio.wait_for(self.ready.wait(), timeout=10)
            return await write(**kwargs)

        return held


@pytest.fixture
def write_gate(monkeypatch: pytest.MonkeyPatch) -> WriteGate:
    gate = WriteGate()
    for name in ("update_user", "delete_user"):
        monkeypatch.setattr(users_crud, name, gate.wrap(getattr(users_crud, name)))
    return gate


@pytest.mark.postgres_only
class TestConcurrentDemotions:
    """Without a lock each request sees the other admin still in place and both succeed."""

    async def test_two_admins_demoting_each_other_leave_one(
        self,
        make_user: MakeUser,
        client_for: ClientFor,
        sessionmaker: Sessionmaker,
        write_gate: WriteGate,
    ) -> None:
        for round_ in range(10):
            write_gate.expect(2)
            a = await make_user(f"a.{round_}", is_admin=True)
            b = await make_user(f"b.{round_}", is_admin=True)
            async with client_for(a) as client_a, client_for(b) as client_b:
                responses = await asyncio.gather(
                    client_a.patch(f"/users/{b.id}", json={"is_admin": False}),
                    client_b.patch(f"/users/{a.id}", json={"is_admin": False}),
                )

            assert sorted(r.status_code for r in responses) == [200, 409], round_
            loser = next(r for r in responses if r.status_code == 409)
            assert loser.json() == {"detail": LAST_ADMIN}
            survivors = await active_admins(sessionmaker)
            assert len(survivors) == 1, round_
            # Clear the survivor so the next round starts from exactly two admins.
            (survivor,) = (u for u in (a, b) if u.username == survivors[0])
            async with sessionmaker() as session:
                row = await session.get(User, survivor.id)
                assert row is not None
                row.role = "user"
                await session.commit()

    async def test_many_admins_stepping_down_at_once_leave_exactly_one(
        self,
        make_user: MakeUser,
        client_for: ClientFor,
        sessionmaker: Sessionmaker,
        write_gate: WriteGate,
    ) -> None:
        admins = [await make_user(f"admin.{n}", is_admin=True) for n in range(9)]
        write_gate.expect(len(admins))
        clients = [client_for(admin) for admin in admins]
        requests = []
        for n, (admin, caller) in enumerate(zip(admins, clients, strict=True)):
            path = f"/users/{admin.id}"
            if n % 3 == 0:
                requests.append(caller.delete(path))
            else:
                body = {"is_admin": False} if n % 3 == 1 else {"is_active": False}
                requests.append(caller.patch(path, json=body))

        responses = await asyncio.gather(*requests)
        for caller in clients:
            await caller.aclose()

        codes = [r.status_code for r in responses]
        assert codes.count(409) == 1
        assert sorted(set(codes) - {409}) == [200, 204]
        (survivor,) = await active_admins(sessionmaker)
        assert codes[int(survivor.split(".")[1])] == 409


def test_operations_are_documented() -> None:
    schema = create_app().openapi()
    item = schema["paths"]["/v1/users/{user_id}"]
    ids = {method: operation["operationId"] for method, operation in item.items()}
    assert ids == {"get": "read_user", "patch": "update_user", "delete": "delete_user"}
    assert "409" not in item["get"]["responses"]
    for method in ("patch", "delete"):
        assert "no active administrator" in item[method]["responses"]["409"]["description"]
    update = schema["components"]["schemas"]["UserUpdate"]
    assert update["examples"] == [{"role": "auditor"}, {"is_active": False}]
    assert update["additionalProperties"] is False
