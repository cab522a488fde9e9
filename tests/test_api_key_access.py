"""What an API key may do: its scopes intersected with its owner's role, decided on every request;
its last use written at most once a minute; its account found in the same statement."""

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import event, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.access import Principal, require
from app.accounts.keys import crud as key_crud
from app.accounts.keys import usage
from app.accounts.keys.crud import _KEY_ACCESS
from app.accounts.keys.models import ApiKey, ApiKeyScope
from app.accounts.models import User
from app.accounts.roles import ROLE_PERMISSIONS, Role, allowed, refusal
from app.core.errors import ForbiddenError
from app.core.types import utc_now
from app.employees.key_crud import _EMPLOYEE_AS_KEY, _LOCK_AS_KEY
from tests.conftest import USER_PASSWORD, employee_payload
from tests.test_api_keys import change_key, key_client, new_key, stored_keys
from tests.test_read_route import both_ways

ALL_SCOPES = ("employees:read", "employees:write", "history:read")
CSV = (
    b"emp_id,emp_name,city,country,emp_dob\r\n9,Grace Hopper,New York,United States,1906-12-09\r\n"
)
# name: (method, path, request options, what it needs, its success status)
CALLS: dict[str, tuple[str, str, dict[str, Any], str, int]] = {
    "list": ("GET", "/v1/employees/", {}, "employees:read", 200),
    "read": ("GET", "/v1/employees/7", {}, "employees:read", 200),
    "read at the root": ("GET", "/employees/7", {}, "employees:read", 200),
    "read, not plain": ("GET", "/v1/employees/007", {}, "employees:read", 200),
    "export": ("GET", "/v1/employees/export.csv", {}, "employees:read", 200),
    "history": ("GET", "/v1/employees/7/history", {}, "history:read", 200),
    "create": (
        "POST",
        "/v1/employees/",
        {"json": employee_payload(emp_id=8)},
        "employees:write",
        201,
    ),
    "replace": (
        "PUT",
        "/v1/employees/7",
        {"json": employee_payload(emp_id=7, city="Paris")},
        "employees:write",
        200,
    ),
    "update": ("PATCH", "/v1/employees/7", {"json": {"city": "Paris"}}, "employees:write", 200),
    "delete": ("DELETE", "/v1/employees/7", {}, "employees:write", 204),
    "import": (
        "POST",
        "/v1/employees/import",
        {"files": {"file": ("new.csv", CSV, "text/csv")}},
        "employees:write",
        201,
    ),
}


@pytest.fixture
async def stored(admin_user_client: AsyncClient) -> None:
    """Employee 7, written through the API so that it has a history."""
    response = await admin_user_client.post("/v1/employees/", json=employee_payload(emp_id=7))
    assert response.status_code == 201


async def unchanged(admin_user_client: AsyncClient) -> None:
    """Nothing a refused write could have done: 7 as it was, neither 8 nor 9 created."""
    listed = (await admin_user_client.get("/v1/employees/")).json()
    assert [(e["emp_id"], e["city"], e["version"]) for e in listed] == [(7, "London", 1)]


async def call(client: AsyncClient, name: str) -> int:
    method, path, options, _, _ = CALLS[name]
    return (await client.request(method, path, **options)).status_code


class TestScopes:
    """An admin's key may do what its scopes name, route by route, and nothing else."""

    @pytest.mark.parametrize("name", list(CALLS))
    @pytest.mark.parametrize("scope", ALL_SCOPES)
    async def test_one_scope(
        self, app, client_for, admin_user, admin_user_client, stored, name, scope
    ):
        created = await new_key(client_for, admin_user, scope)
        _, _, _, needs, success = CALLS[name]

        async with key_client(app, created["key"]) as program:
            status = await call(program, name)

        assert status == (success if needs == scope else 403)
        if status == 403:
            await unchanged(admin_user_client)

    @pytest.mark.parametrize("name", list(CALLS))
    async def test_every_scope(self, app, client_for, admin_user, stored, name):
        created = await new_key(client_for, admin_user, *ALL_SCOPES)
        async with key_client(app, created["key"]) as program:
            assert await call(program, name) == CALLS[name][4]

    async def test_a_missing_scope_is_named(self, app, client_for, admin_user, stored):
        created = await new_key(client_for, admin_user, "employees:read")
        async with key_client(app, created["key"]) as program:
            response = await program.patch("/v1/employees/7", json={"city": "Paris"})
        assert response.json() == {"detail": "This API key does not have the employees:write scope"}

    async def test_a_keys_write_is_the_owners_in_the_history(
        self, app, client_for, admin_user, admin_user_client, stored
    ):
        created = await new_key(client_for, admin_user, "employees:write")
        async with key_client(app, created["key"]) as program:
            assert (
                await program.patch("/v1/employees/7", json={"city": "Paris"})
            ).status_code == 200
        (latest, _) = (await admin_user_client.get("/v1/employees/7/history")).json()
        assert (latest["actor_id"], latest["actor_username"]) == (str(admin_user.id), "root.admin")


class TestOwnersRole:
    """The owner's role now, not when the key was made, bounds the key."""

    @pytest.mark.parametrize("name", list(CALLS))
    async def test_a_regular_owners_key_only_reads(
        self, app, client_for, normal_user, admin_user_client, stored, name
    ):
        created = await new_key(client_for, normal_user, *ALL_SCOPES)
        _, _, _, needs, success = CALLS[name]

        async with key_client(app, created["key"]) as program:
            response = await program.request(CALLS[name][0], CALLS[name][1], **CALLS[name][2])

        if needs == "employees:read":
            assert response.status_code == success
        else:
            assert response.status_code == 403
            assert response.json() == {"detail": refusal(needs)}  # type: ignore[arg-type]
            await unchanged(admin_user_client)

    @pytest.mark.parametrize("name", list(CALLS))
    async def test_an_auditors_key_reads_and_reads_history_never_writes(
        self, app, client_for, make_user, admin_user_client, stored, name
    ):
        auditor: User = await make_user("the.auditor", role=Role.auditor)
        created = await new_key(client_for, auditor, *ALL_SCOPES)
        _, _, _, needs, success = CALLS[name]

        async with key_client(app, created["key"]) as program:
            status = await call(program, name)

        assert status == (403 if needs == "employees:write" else success)
        if status == 403:
            await unchanged(admin_user_client)

    async def test_a_keys_reads_hide_what_its_owners_role_may_not_see(
        self, app_with, client_for, normal_user, admin_user, stored
    ):
        private = await app_with(employee_dob_visible_to="admins")
        users = await new_key(client_for, normal_user)
        admins = await new_key(client_for, admin_user)
        async with key_client(private, users["key"]) as program:
            one = await program.get("/v1/employees/7")
            listed = await program.get("/v1/employees/")
            export = await program.get("/v1/employees/export.csv")
            sorted_by_dob = await program.get("/v1/employees/?sort_by=emp_dob")
        assert one.status_code == 200 and "emp_dob" not in one.json()
        assert "emp_dob" not in listed.json()[0]
        assert export.text.splitlines()[0] == "emp_id,emp_name,city,country"
        assert sorted_by_dob.status_code == 403
        async with key_client(private, admins["key"]) as program:
            assert (await program.get("/v1/employees/7")).json()["emp_dob"] == "1985-12-10"

    async def test_a_demoted_owners_write_key_stops_writing_at_once(
        self, app, client_for, make_user, admin_user_client, stored, sessionmaker
    ):
        owner: User = await make_user("second.admin", is_admin=True)
        created = await new_key(client_for, owner, "employees:read", "employees:write")
        async with key_client(app, created["key"]) as program:
            assert await call(program, "update") == 200

            demoted = await admin_user_client.patch(
                f"/v1/users/{owner.id}", json={"is_admin": False}
            )
            assert demoted.status_code == 200

            for name in ("replace", "delete", "create", "import"):
                assert await call(program, name) == 403, name
            assert await call(program, "read") == 200

            # Promoted again, the same key writes again: nothing was cached.
            await set_user(sessionmaker, owner.id, role=Role.admin.value)
            assert await call(program, "delete") == 204

    async def test_a_deactivated_owners_keys_are_refused_at_once(
        self, app, client_for, admin_user, stored, sessionmaker
    ):
        created = await new_key(client_for, admin_user, *ALL_SCOPES)
        async with key_client(app, created["key"]) as program:
            assert await call(program, "read") == 200
            await set_user(sessionmaker, admin_user.id, is_active=False)

            for name in (
                "read",
                "read, not plain",
                "list",
                "export",
                "history",
                "update",
                "create",
            ):
                response = await program.request(CALLS[name][0], CALLS[name][1], **CALLS[name][2])
                assert response.status_code == 401, name
                assert response.json() == {"detail": "Could not validate credentials"}
                assert response.headers["www-authenticate"] == "Bearer"

            # The check is the account's, on every request: back in service, the key works.
            await set_user(sessionmaker, admin_user.id, is_active=True)
            assert await call(program, "read") == 200

    async def test_deactivating_an_account_deletes_its_keys(
        self, app, client_for, admin_user_client, normal_user, stored, sessionmaker
    ):
        created = await new_key(client_for, normal_user)
        path = f"/v1/users/{normal_user.id}"
        assert (await admin_user_client.patch(path, json={"is_active": False})).status_code == 200

        assert await stored_keys(sessionmaker) == []
        assert (await admin_user_client.patch(path, json={"is_active": True})).status_code == 200
        async with key_client(app, created["key"]) as program:
            assert await call(program, "read") == 401

    async def test_deleting_an_account_deletes_its_keys(
        self, app, client_for, admin_user, admin_user_client, normal_user, stored, sessionmaker
    ):
        created = await new_key(client_for, normal_user)
        kept = await new_key(client_for, admin_user)

        response = await admin_user_client.delete(f"/v1/users/{normal_user.id}")

        assert response.status_code == 204
        assert [str(key.id) for key in await stored_keys(sessionmaker)] == [kept["id"]]
        async with key_client(app, created["key"]) as program:
            assert await call(program, "read") == 401

    async def test_keys_survive_sign_out_everywhere(self, app, client_for, normal_user, stored):
        created = await new_key(client_for, normal_user)
        async with client_for(normal_user) as person:
            assert (await person.post("/v1/auth/logout-all")).status_code == 204
            assert (await person.get("/v1/employees/7")).status_code == 401
        async with key_client(app, created["key"]) as program:
            assert await call(program, "read") == 200

    async def test_keys_survive_a_password_change(self, app, client_for, normal_user, stored):
        created = await new_key(client_for, normal_user)
        async with client_for(normal_user) as person:
            change = {"current_password": USER_PASSWORD, "new_password": "another long password"}
            assert (await person.post("/v1/users/me/password", json=change)).status_code == 204
        async with key_client(app, created["key"]) as program:
            assert await call(program, "read") == 200


async def set_user(sessionmaker: Any, user_id: uuid.UUID, **values: Any) -> None:
    async with sessionmaker() as session:
        await session.execute(update(User).where(User.id == user_id).values(**values))  # type: ignore[arg-type]
        await session.commit()


class TestRoleRules:
    """The one decision every route asks, for all three roles (the auditor's come with roles)."""

    def test_each_roles_permissions(self):
        assert {role: sorted(rules) for role, rules in ROLE_PERMISSIONS.items()} == {
            "admin": [
                "accounts:read",
                "accounts:write",
                "employees:read",
                "employees:write",
                "history:read",
            ],
            "auditor": ["accounts:read", "employees:read", "history:read"],
            "user": ["employees:read"],
        }

    def test_key_scopes_are_permissions_no_key_can_manage_accounts(self):
        scopes = {scope.value for scope in ApiKeyScope}
        assert scopes <= ROLE_PERMISSIONS["admin"]
        assert not {"accounts:read", "accounts:write"} & scopes

    @pytest.mark.parametrize("role", ["admin", "auditor", "user"])
    @pytest.mark.parametrize("scope", ALL_SCOPES)
    @pytest.mark.parametrize("permission", [*ALL_SCOPES, "accounts:read", "accounts:write"])
    def test_a_key_may_do_what_both_its_scope_and_its_owners_role_allow(
        self, role, scope, permission
    ):
        principal = Principal(uuid.uuid4(), "someone", Role(role), frozenset({scope}))
        try:
            require(principal, permission)
            permitted = True
        except ForbiddenError:
            permitted = False
        assert permitted is (permission == scope and allowed(Role(role), permission))

    @pytest.mark.parametrize("role", ["admin", "auditor", "user"])
    def test_a_signed_in_person_may_do_what_the_role_allows(self, role):
        principal = Principal(uuid.uuid4(), "someone", Role(role))
        for permission in (*ALL_SCOPES, "accounts:read", "accounts:write"):
            try:
                require(principal, permission)
                permitted = True
            except ForbiddenError:
                permitted = False
            assert permitted is allowed(Role(role), permission)


@contextmanager
def key_updates(engine: AsyncEngine) -> Iterator[list[str]]:
    """The UPDATEs of `api_key` the engine sends, as they are sent."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE API_KEY"):
            sent.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def last_used(sessionmaker: Any, key_id: str) -> Any:
    async with sessionmaker() as session:
        key = await session.get(ApiKey, uuid.UUID(key_id))
        assert key is not None
        return key.last_used_at


class TestLastUsed:
    async def test_written_once_within_a_minute_across_many_requests(
        self, app, engine, client_for, admin_user, stored, sessionmaker, monkeypatch
    ):
        created = await new_key(client_for, admin_user, *ALL_SCOPES)
        before = utc_now()
        with key_updates(engine) as sent:
            async with key_client(app, created["key"]) as program:
                for name in ["read", "list", "history", "update", "read, not plain"] * 5:
                    assert await call(program, name) < 300
                assert len(sent) == 1
                first = await last_used(sessionmaker, created["id"])
                assert before <= first <= utc_now()

                # A minute later, the next request writes it once more.
                later = utc_now() + timedelta(seconds=61)
                monkeypatch.setattr(usage, "utc_now", lambda: later)
                for _ in range(5):
                    assert await call(program, "read") == 200
        assert len(sent) == 2
        assert await last_used(sessionmaker, created["id"]) == later

    async def test_the_list_shows_it(self, app, client_for, normal_user, stored):
        created = await new_key(client_for, normal_user)
        async with key_client(app, created["key"]) as program:
            assert await call(program, "read") == 200
        async with client_for(normal_user) as person:
            (listed,) = (await person.get("/v1/users/me/api-keys")).json()
        assert listed["last_used_at"] is not None

    async def test_another_worker_within_the_minute_writes_nothing(
        self, app, app_with, engine, client_for, admin_user, stored, sessionmaker
    ):
        created = await new_key(client_for, admin_user)
        async with key_client(app, created["key"]) as program:
            assert await call(program, "read") == 200
        other = await app_with()  # its own memory, the same database
        with key_updates(engine) as sent:
            async with key_client(other, created["key"]) as program:
                for _ in range(5):
                    assert await call(program, "read") == 200
        assert sent == []

    async def test_the_update_itself_skips_a_recent_write(self, client_for, admin_user, session):
        created = await new_key(client_for, admin_user)
        key_id, now = uuid.UUID(created["id"]), utc_now()
        assert await key_crud.touch_api_key(session=session, key_id=key_id, now=now)
        soon = now + timedelta(seconds=30)
        assert not await key_crud.touch_api_key(session=session, key_id=key_id, now=soon)
        later = now + timedelta(seconds=61)
        assert await key_crud.touch_api_key(session=session, key_id=key_id, now=later)

    async def test_refused_requests_write_nothing(
        self, app, engine, client_for, admin_user, stored, sessionmaker
    ):
        created = await new_key(client_for, admin_user)
        await change_key(sessionmaker, created["id"], expires_at=utc_now() - timedelta(seconds=1))
        with key_updates(engine) as sent:
            async with key_client(app, created["key"]) as program:
                assert await call(program, "read") == 401
                assert await call(program, "list") == 401
        assert sent == []

    async def test_a_failing_write_never_fails_the_request(
        self, app, client_for, admin_user, stored, monkeypatch, caplog
    ):
        async def failing(**_: Any) -> bool:
            raise RuntimeError("database gone")

        monkeypatch.setattr(key_crud, "touch_api_key", failing)
        created = await new_key(client_for, admin_user)
        with caplog.at_level(logging.WARNING, logger="app.http.deferred"):
            async with key_client(app, created["key"]) as program:
                response = await program.get("/v1/employees/7")
        assert response.status_code == 200 and response.json()["emp_id"] == 7
        assert "a deferred job failed" in caplog.text


class CountingReader:
    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.statements: list[Any] = []

    async def first(self, query: Any, **values: Any) -> Any:
        self.statements.append(query)
        return await self.reader.first(query, **values)

    async def all(self, query: Any, **values: Any) -> Any:
        self.statements.append(query)
        return await self.reader.all(query, **values)


class TestOneRoundTrip:
    @pytest.fixture
    def reads(self, app: Any) -> CountingReader:
        counting = CountingReader(app.state.database.reader)
        app.state.database = replace(app.state.database, reader=counting)
        return counting

    @pytest.mark.parametrize(("path", "status"), [("/v1/employees/7", 200), ("/employees/8", 404)])
    async def test_one_record_with_a_key_is_one_statement(
        self, app, client_for, admin_user, stored, sessionmaker, reads, path, status
    ):
        created = await new_key(client_for, admin_user)
        await change_key(sessionmaker, created["id"], last_used_at=utc_now())  # nothing to write
        reads.statements.clear()
        async with key_client(app, created["key"]) as program:
            response = await program.get(path)
        assert response.status_code == status
        assert reads.statements == [_EMPLOYEE_AS_KEY]

    async def test_other_routes_find_the_key_and_its_account_in_one_statement(
        self, app, client_for, admin_user, stored, reads
    ):
        created = await new_key(client_for, admin_user, "employees:read", "history:read")
        reads.statements.clear()
        async with key_client(app, created["key"]) as program:
            assert await call(program, "list") == 200
            assert await call(program, "history") == 200
        assert reads.statements == [_KEY_ACCESS, _KEY_ACCESS]

    @pytest.mark.postgres_only
    @pytest.mark.parametrize("query", [_KEY_ACCESS, _EMPLOYEE_AS_KEY, _LOCK_AS_KEY])
    async def test_the_key_is_found_through_its_unique_index(self, engine, query):
        dialect = engine.dialect
        statement = query.statement_for(dialect).params(key_hash="0" * 64, emp_id=7)
        sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        async with engine.connect() as connection:
            await connection.execute(text("SET LOCAL enable_seqscan = off"))
            plan = (await connection.execute(text(f"EXPLAIN {sql}"))).scalars().all()
        assert any("uq_api_key_key_hash" in line for line in plan), plan


LIMITS = {
    "rate_limit_enabled": True,
    "rate_limit_authenticated": "100/minute",
    "rate_limit_anonymous": "50/minute",
}


def policy(response: Any) -> tuple[str, int]:
    name, _, rest = response.headers["RateLimit"].partition(";")
    return name.strip('"'), int(rest.split(";")[0].removeprefix("r="))


class TestRequestLimits:
    async def test_an_admitted_key_counts_against_its_owners_quota(
        self, app_with, normal_user, token_for, stored
    ):
        limited = await app_with(**LIMITS)
        async with key_client(limited, token_for(normal_user)) as person:
            response = await person.post(
                "/v1/users/me/api-keys", json={"name": "x", "scopes": ["employees:read"]}
            )
            key = response.json()["key"]
            assert policy(response) == ("authenticated", 99)
            async with key_client(limited, key) as program:
                # Unknown to this worker until admitted once: counted by address.
                assert policy(await program.get("/v1/employees/7")) == ("anonymous", 49)
                assert policy(await program.get("/v1/employees/7")) == ("authenticated", 98)
                assert policy(await program.get("/v1/employees/")) == ("authenticated", 97)
            assert policy(await person.get("/v1/employees/7")) == ("authenticated", 96)

    async def test_made_up_keys_count_against_the_address(self, app_with, stored):
        limited = await app_with(**LIMITS)
        for n in range(3):
            async with key_client(limited, "erk_" + str(n) * 54) as program:
                response = await program.get("/v1/employees/7")
            assert response.status_code == 401
            assert policy(response) == ("anonymous", 49 - n)


def test_the_schema_tells_swagger_users_about_keys(app):
    (scheme,) = app.openapi()["components"]["securitySchemes"].values()
    assert "erk_" in scheme["description"] and "api-keys" in scheme["description"]


class TestFastPathSameAnswers:
    """GET /employees/{emp_id} with a key: the direct path answers as FastAPI's handler does."""

    @pytest.mark.parametrize("path", ["/v1/employees/7", "/employees/8"])
    @pytest.mark.parametrize("which", ["read", "write only", "revoked", "malformed"])
    async def test_same_answers(
        self, app, client_for, admin_user, normal_user, stored, sessionmaker, path, which
    ):
        if which == "malformed":
            key = "erk_" + "A" * 10
        else:
            scope = "employees:write" if which == "write only" else "employees:read"
            created = await new_key(client_for, normal_user, scope)
            key = created["key"]
            if which == "revoked":
                async with client_for(normal_user) as person:
                    await person.delete(f"/v1/users/me/api-keys/{created['id']}")
        async with key_client(app, key) as program:
            direct, standard = await both_ways(app, program, path)
        assert direct == standard
        expected = {"read": (200, 404), "write only": (403,), "revoked": (401,)}
        assert direct[0] in expected.get(which, (401,))
