"""Roles: admins do everything, auditors read (histories and accounts too) and write nothing,
users read employee records. The account row decides on every request, never the token."""

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts.access import Role
from app.accounts.crud import LAST_ADMIN
from app.accounts.history.models import AccountEvent
from app.accounts.models import User
from app.employees.history.models import EmployeeAudit
from app.employees.models import Employee
from app.idempotency.models import IdempotencyKey
from tests.conftest import USER_PASSWORD, employee_payload

Sessionmaker = async_sessionmaker[AsyncSession]
ADMIN_REQUIRED = {"detail": "Administrator privileges are required"}
AUDITOR_REQUIRED = {"detail": "Administrator or auditor privileges are required"}
CSV = (
    "emp_id,emp_name,city,country,emp_dob\r\n"
    "2001,Grace Hopper,New York,United States,1906-12-09\r\n"
)


async def snapshot(sessionmaker: Sessionmaker) -> dict[str, Any]:
    """What a refused write must leave as it was: records, accounts and every trail."""
    async with sessionmaker() as session:
        employees = await session.execute(
            select(Employee.emp_id, Employee.city, Employee.version).order_by(Employee.emp_id)  # type: ignore[arg-type]
        )
        users = await session.execute(
            select(User.username, User.role, User.is_active, User.token_version).order_by(
                User.username  # type: ignore[arg-type]
            )
        )
        counts = {}
        for model in (EmployeeAudit, AccountEvent, IdempotencyKey):
            total = await session.execute(select(func.count()).select_from(model))
            counts[model.__name__] = total.scalar_one()
    return {"employees": list(employees), "users": list(users), **counts}


@pytest.fixture
async def stored(make_employees: Callable[..., Any]) -> list[Employee]:
    return list(await make_employees({"emp_id": 1001}, {"emp_id": 1002, "city": "Paris"}))


def writes(user_id: uuid.UUID, self_id: uuid.UUID) -> list[tuple[str, str, dict[str, Any]]]:
    """Every write of the API, as (method, path, request options)."""
    return [
        ("post", "/employees/", {"json": employee_payload(2001)}),
        ("post", "/v1/employees/", {"json": employee_payload(2002)}),
        (
            "post",
            "/employees/",
            {"json": employee_payload(2003), "headers": {"Idempotency-Key": "k-1"}},
        ),
        ("put", "/employees/1001", {"json": employee_payload(1001, city="Oslo")}),
        ("patch", "/employees/1001", {"json": {"city": "Oslo"}}),
        ("patch", "/employees/1001", {"json": {"city": "Oslo"}, "headers": {"If-Match": "*"}}),
        ("delete", "/employees/1002", {}),
        ("post", "/employees/import", {"files": {"file": ("new.csv", CSV, "text/csv")}}),
        (
            "post",
            "/employees/import?dry_run=true",
            {"files": {"file": ("new.csv", CSV, "text/csv")}},
        ),
        ("patch", f"/users/{user_id}", {"json": {"role": "admin"}}),
        ("patch", f"/users/{user_id}", {"json": {"is_active": False}}),
        ("patch", f"/users/{self_id}", {"json": {"role": "admin"}}),
        ("patch", f"/users/{self_id}", {"json": {"is_admin": True}}),
        ("delete", f"/users/{user_id}", {}),
        ("delete", f"/users/{self_id}", {}),
    ]


class TestAuditorWrites:
    async def test_every_write_is_403_and_changes_nothing(
        self,
        auditor_user_client: AsyncClient,
        auditor_user: User,
        normal_user: User,
        admin_user: User,
        stored: list[Employee],
        sessionmaker: Sessionmaker,
    ) -> None:
        before = await snapshot(sessionmaker)

        for method, path, options in writes(normal_user.id, auditor_user.id):
            response = await auditor_user_client.request(method, path, **options)

            assert response.status_code == 403, (method, path, response.text)
            assert response.json() == ADMIN_REQUIRED, (method, path)
        assert await snapshot(sessionmaker) == before

    async def test_an_auditor_may_still_change_its_password_and_sign_out(
        self, client: AsyncClient, auditor_user: User, sessionmaker: Sessionmaker
    ) -> None:
        signed_in = await client.post(
            "/auth/token", data={"username": "audit.or", "password": USER_PASSWORD}
        )
        headers = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
        changed = await client.post(
            "/users/me/password",
            json={"current_password": USER_PASSWORD, "new_password": "quiet harbour lantern"},
            headers=headers,
        )
        again = await client.post(
            "/auth/token", data={"username": "audit.or", "password": "quiet harbour lantern"}
        )
        tokens = again.json()
        refresh = {"refresh_token": tokens["refresh_token"]}
        out = await client.post("/auth/logout", json=refresh)
        refreshed = await client.post("/auth/refresh", json=refresh)

        assert (signed_in.status_code, changed.status_code, again.status_code) == (200, 204, 200)
        assert out.status_code == 204
        assert refreshed.status_code == 401
        async with sessionmaker() as session:
            row = await session.get(User, auditor_user.id)
        assert row is not None and row.role == "auditor"


class TestReads:
    @pytest.mark.parametrize(
        "path",
        [
            "/employees/",
            "/employees/1001",
            "/employees/export.csv",
            "/employees/1001/history",
            "/users/",
            "/users/me",
        ],
    )
    async def test_auditor_reads(
        self, auditor_user_client: AsyncClient, admin_user_client: AsyncClient, path: str
    ) -> None:
        await admin_user_client.post("/employees/", json=employee_payload())

        response = await auditor_user_client.get(path)

        assert response.status_code == 200, response.text

    async def test_auditor_reads_any_account_and_its_history(
        self, auditor_user_client: AsyncClient, normal_user: User
    ) -> None:
        account = await auditor_user_client.get(f"/users/{normal_user.id}")
        history = await auditor_user_client.get(f"/users/{normal_user.id}/history")

        assert account.status_code == 200
        assert (account.json()["role"], account.json()["is_admin"]) == ("user", False)
        assert (history.status_code, history.json()) == (200, [])

    @pytest.mark.parametrize(
        "path",
        ["/employees/1001/history", "/users/", "/users", "/v1/users/", "USER", "USER/history"],
    )
    async def test_user_gets_403_for_histories_and_accounts(
        self,
        normal_user_client: AsyncClient,
        admin_user: User,
        admin_user_client: AsyncClient,
        path: str,
    ) -> None:
        await admin_user_client.post("/employees/", json=employee_payload())
        path = path.replace("USER", f"/users/{admin_user.id}")

        response = await normal_user_client.get(path)

        assert response.status_code == 403
        assert response.json() == AUDITOR_REQUIRED

    async def test_user_still_reads_employee_records(
        self, normal_user_client: AsyncClient, stored: list[Employee]
    ) -> None:
        one = await normal_user_client.get("/employees/1001")
        listed = await normal_user_client.get("/employees/")

        assert (one.status_code, listed.status_code) == (200, 200)
        assert len(listed.json()) == 2


class TestChangingRoles:
    async def patch(self, client: AsyncClient, user: User, body: Any) -> Any:
        return await client.patch(f"/users/{user.id}", json=body)

    async def role_of(self, sessionmaker: Sessionmaker, user: User) -> str:
        async with sessionmaker() as session:
            row = await session.get(User, user.id)
        assert row is not None
        return row.role

    @pytest.mark.parametrize("role", ["auditor", "admin", "user"])
    async def test_role_is_set_and_shown(
        self,
        admin_user_client: AsyncClient,
        normal_user: User,
        sessionmaker: Sessionmaker,
        role: str,
    ) -> None:
        response = await self.patch(admin_user_client, normal_user, {"role": role})

        assert response.status_code == 200
        body = response.json()
        assert (body["role"], body["is_admin"]) == (role, role == "admin")
        assert await self.role_of(sessionmaker, normal_user) == role

    async def test_a_new_auditor_reads_accounts_and_still_writes_nothing_at_once(
        self,
        admin_user_client: AsyncClient,
        normal_user: User,
        client_for: Callable[[User], AsyncClient],
    ) -> None:
        async with client_for(normal_user) as user_client:  # the token issued before
            before = await user_client.get("/users/")
            await self.patch(admin_user_client, normal_user, {"role": "auditor"})
            after = await user_client.get("/users/")
            write = await user_client.post("/employees/", json=employee_payload())
            await self.patch(admin_user_client, normal_user, {"role": "user"})
            demoted = await user_client.get("/users/")

        assert (before.status_code, after.status_code, demoted.status_code) == (403, 200, 403)
        assert write.status_code == 403

    @pytest.mark.parametrize(
        ("start", "is_admin", "end"),
        [
            (Role.user, True, "admin"),
            (Role.auditor, True, "admin"),
            (Role.admin, False, "user"),
            (Role.auditor, False, "auditor"),  # false demotes admins only
            (Role.user, False, "user"),
        ],
    )
    async def test_is_admin_keeps_working(
        self,
        admin_user_client: AsyncClient,
        make_user: Callable[..., Any],
        sessionmaker: Sessionmaker,
        start: Role,
        is_admin: bool,
        end: str,
    ) -> None:
        account = await make_user("some.one", role=start)

        response = await self.patch(admin_user_client, account, {"is_admin": is_admin})

        assert response.status_code == 200
        assert (response.json()["role"], response.json()["is_admin"]) == (end, end == "admin")
        assert await self.role_of(sessionmaker, account) == end

    @pytest.mark.parametrize(
        "body",
        [
            {"role": "admin", "is_admin": True},
            {"role": "user", "is_admin": False},
            {"role": "auditor", "is_admin": False, "is_active": True},
            {"role": "superuser"},
            {"role": "Admin"},
            {"role": " admin"},
            {"role": ""},
            {"role": None},
            {"role": 1},
            {"role": True},
            {"role": ["admin"]},
            {"role": {"name": "admin"}},
            {"role": "admin\u0000"},
            {"roles": "admin"},
        ],
    )
    async def test_bad_role_input_is_422_and_changes_nothing(
        self,
        admin_user_client: AsyncClient,
        normal_user: User,
        sessionmaker: Sessionmaker,
        body: dict[str, Any],
    ) -> None:
        before = await snapshot(sessionmaker)

        response = await self.patch(admin_user_client, normal_user, body)

        assert response.status_code == 422, response.text
        assert await snapshot(sessionmaker) == before

    @pytest.mark.parametrize("body", [{"role": "auditor"}, {"role": "user"}])
    async def test_the_last_active_admin_keeps_the_role(
        self,
        admin_user_client: AsyncClient,
        admin_user: User,
        make_user: Callable[..., Any],
        sessionmaker: Sessionmaker,
        body: dict[str, str],
    ) -> None:
        await make_user("dormant.admin", is_admin=True, is_active=False)
        await make_user("some.auditor", role=Role.auditor)
        before = await snapshot(sessionmaker)

        response = await self.patch(admin_user_client, admin_user, body)

        assert response.status_code == 409
        assert response.json() == {"detail": LAST_ADMIN}
        assert await snapshot(sessionmaker) == before

    async def test_the_last_admin_may_be_set_to_admin_again(
        self, admin_user_client: AsyncClient, admin_user: User
    ) -> None:
        response = await self.patch(admin_user_client, admin_user, {"role": "admin"})

        assert response.status_code == 200
        assert response.json()["role"] == "admin"

    async def test_an_admin_may_become_an_auditor_while_another_remains(
        self,
        admin_user_client: AsyncClient,
        admin_user: User,
        make_user: Callable[..., Any],
    ) -> None:
        await make_user("second.admin", is_admin=True)

        response = await self.patch(admin_user_client, admin_user, {"role": "auditor"})
        reads = await admin_user_client.get("/users/")
        write = await admin_user_client.post("/employees/", json=employee_payload())

        assert response.status_code == 200
        assert (reads.status_code, write.status_code) == (200, 403)


class TestRoleInSchema:
    async def test_every_account_answer_has_role_and_is_admin(
        self, admin_user_client: AsyncClient, auditor_user: User
    ) -> None:
        listed = await admin_user_client.get("/users/")
        me = await admin_user_client.get("/users/me")

        roles = {u["username"]: (u["role"], u["is_admin"]) for u in listed.json()}
        assert roles == {"root.admin": ("admin", True), "audit.or": ("auditor", False)}
        assert (me.json()["role"], me.json()["is_admin"]) == ("admin", True)
