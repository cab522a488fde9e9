"""API keys for programs: made, listed and revoked by their owner (or an admin), shown once and
stored as a digest; refused alike whenever they cannot act; never a way into accounts."""

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts.dependencies import KEYS_REFUSED
from app.accounts.keys.models import MAX_LIVE_KEYS, ApiKey
from app.accounts.models import RefreshToken, User
from app.core.types import utc_now
from tests.conftest import USER_PASSWORD, employee_payload

KEYS = "/v1/users/me/api-keys"
BAD_CREDENTIALS = {"detail": "Could not validate credentials"}
REFUSED = {"detail": KEYS_REFUSED}
Sessionmaker = async_sessionmaker[AsyncSession]
ClientFor = Callable[[User], AsyncClient]


def key_client(app: Any, key: str | bytes) -> AsyncClient:
    header = b"Bearer " + key if isinstance(key, bytes) else f"Bearer {key}"
    return AsyncClient(
        transport=ASGITransport(app=app), base_url="http://test", headers={"Authorization": header}
    )


async def new_key(client_for: ClientFor, owner: User, *scopes: str, **extra: Any) -> dict[str, Any]:
    body = {"name": "nightly sync", "scopes": list(scopes or ["employees:read"])} | extra
    async with client_for(owner) as client:
        response = await client.post(KEYS, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def stored_keys(sessionmaker: Sessionmaker, *where: Any) -> list[ApiKey]:
    async with sessionmaker() as session:
        return list((await session.execute(select(ApiKey).where(*where))).scalars())


async def change_key(sessionmaker: Sessionmaker, key_id: str, **values: Any) -> None:
    async with sessionmaker() as session:
        await session.execute(
            update(ApiKey).where(ApiKey.id == uuid.UUID(key_id)).values(**values)  # type: ignore[arg-type]
        )
        await session.commit()


@pytest.fixture
async def stored(make_employees: Callable[..., Any]) -> Any:
    (employee,) = await make_employees(employee_payload(emp_id=7))
    return employee


class TestCreateKey:
    async def test_the_key_is_shown_once_and_only_its_digest_is_stored(
        self, normal_user_client, normal_user, sessionmaker
    ):
        response = await normal_user_client.post(
            KEYS, json={"name": "payroll", "scopes": ["employees:read", "history:read"]}
        )

        assert response.status_code == 201
        body = response.json()
        key = body["key"]
        assert key.startswith("erk_") and len(key) == 58
        assert body["prefix"] == key[:12]
        assert body["scopes"] == ["employees:read", "history:read"]
        assert body["last_used_at"] is None
        assert response.headers["cache-control"] == "no-store"
        (row,) = await stored_keys(sessionmaker)
        assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
        assert row.user_id == normal_user.id
        assert str(row.id) == body["id"]
        assert key not in {row.name, row.prefix, row.key_hash, row.scopes}
        listed = (await normal_user_client.get(KEYS)).text
        assert key not in listed and row.key_hash not in listed
        assert key[12:] not in listed

    async def test_every_key_is_new(self, client_for, normal_user):
        first = await new_key(client_for, normal_user)
        second = await new_key(client_for, normal_user)
        assert first["key"] != second["key"] and first["prefix"] != second["prefix"]

    async def test_lifetime_defaults_to_90_days_and_can_be_chosen(
        self, client_for, normal_user, sessionmaker
    ):
        default = await new_key(client_for, normal_user)
        short = await new_key(client_for, normal_user, expires_in_days=1)
        rows = {str(row.id): row for row in await stored_keys(sessionmaker)}
        for created, days in ((default, 90), (short, 1)):
            row = rows[created["id"]]
            assert row.expires_at - row.created_at == timedelta(days=days)

    @pytest.mark.parametrize(
        "body",
        [
            {"scopes": ["employees:read"]},
            {"name": "x", "scopes": []},
            {"name": "x"},
            {"name": "x", "scopes": ["employees:read", "employees:read"]},
            {"name": "x", "scopes": ["employees:delete"]},
            {"name": "x", "scopes": ["accounts:write"]},
            {"name": "x", "scopes": "employees:read"},
            {"name": "x", "scopes": None},
            {"name": "x", "scopes": ["employees:read", "employees:write", "history:read", "x"]},
            {"name": "", "scopes": ["employees:read"]},
            {"name": "   ", "scopes": ["employees:read"]},
            {"name": "a" * 101, "scopes": ["employees:read"]},
            {"name": "nul\x00", "scopes": ["employees:read"]},
            {"name": "bell\x07", "scopes": ["employees:read"]},
            b'{"name": "\\ud800", "scopes": ["employees:read"]}',  # a lone surrogate
            {"name": None, "scopes": ["employees:read"]},
            {"name": 7, "scopes": ["employees:read"]},
            {"name": "x", "scopes": ["employees:read"], "expires_in_days": 0},
            {"name": "x", "scopes": ["employees:read"], "expires_in_days": 366},
            {"name": "x", "scopes": ["employees:read"], "expires_in_days": -1},
            {"name": "x", "scopes": ["employees:read"], "expires_in_days": True},
            {"name": "x", "scopes": ["employees:read"], "expires_in_days": "90"},
            {"name": "x", "scopes": ["employees:read"], "expires_in_days": 1.5},
            {"name": "x", "scopes": ["employees:read"], "expires_in_days": 10**30},
            {"name": "x", "scopes": ["employees:read"], "expires_in_days": None},
            {"name": "x", "scopes": ["employees:read"], "key": "erk_mine"},
            {"name": "x", "scopes": ["employees:read"], "user_id": str(uuid.uuid4())},
            [],
            "x",
        ],
    )
    async def test_bad_bodies_get_422_and_store_nothing(
        self, normal_user_client, sessionmaker, body
    ):
        if isinstance(body, bytes):
            headers = {"Content-Type": "application/json"}
            response = await normal_user_client.post(KEYS, content=body, headers=headers)
        else:
            response = await normal_user_client.post(KEYS, json=body)

        assert response.status_code == 422, response.text
        assert await stored_keys(sessionmaker) == []

    async def test_undecodable_body_is_400(self, normal_user_client):
        response = await normal_user_client.post(
            KEYS, content=b'{"name": "\xff"}', headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400

    async def test_the_name_is_trimmed(self, client_for, normal_user):
        assert (await new_key(client_for, normal_user, name="  sync  "))["name"] == "sync"

    async def test_an_account_holds_at_most_the_cap_of_live_keys(
        self, normal_user_client, client_for, normal_user, sessionmaker
    ):
        made = [await new_key(client_for, normal_user) for _ in range(MAX_LIVE_KEYS)]

        refused = await normal_user_client.post(
            KEYS, json={"name": "one more", "scopes": ["employees:read"]}
        )
        assert refused.status_code == 409
        assert str(MAX_LIVE_KEYS) in refused.json()["detail"]
        assert len(await stored_keys(sessionmaker)) == MAX_LIVE_KEYS

        # An expired key does not count, and goes when the next one is made.
        await change_key(sessionmaker, made[0]["id"], expires_at=utc_now() - timedelta(seconds=1))
        await new_key(client_for, normal_user)
        ids = {str(row.id) for row in await stored_keys(sessionmaker)}
        assert len(ids) == MAX_LIVE_KEYS and made[0]["id"] not in ids

    @pytest.mark.postgres_only
    async def test_requests_at_once_cannot_pass_the_cap(
        self, client_for, normal_user, sessionmaker
    ):
        for _ in range(MAX_LIVE_KEYS - 1):
            await new_key(client_for, normal_user)
        body = {"name": "racing", "scopes": ["employees:read"]}
        async with client_for(normal_user) as person:
            answers = await asyncio.gather(*(person.post(KEYS, json=body) for _ in range(4)))
        assert sorted(answer.status_code for answer in answers) == [201, 409, 409, 409]
        assert len(await stored_keys(sessionmaker)) == MAX_LIVE_KEYS

    async def test_the_cap_is_per_account(self, client_for, normal_user, admin_user):
        for _ in range(MAX_LIVE_KEYS):
            await new_key(client_for, normal_user)
        await new_key(client_for, admin_user)

    async def test_anonymous_gets_401(self, client):
        response = await client.post(KEYS, json={"name": "x", "scopes": ["employees:read"]})
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"


class TestListKeys:
    async def test_lists_the_callers_keys_without_secrets(
        self, normal_user_client, client_for, normal_user, admin_user
    ):
        mine = await new_key(client_for, normal_user, "employees:read", name="first")
        await new_key(client_for, admin_user, name="not mine")
        second = await new_key(client_for, normal_user, "employees:write", name="second")

        response = await normal_user_client.get(KEYS)

        assert response.status_code == 200
        body = response.json()
        assert [key["name"] for key in body] == ["first", "second"]
        assert set(body[0]) == {
            "id",
            "name",
            "prefix",
            "scopes",
            "created_at",
            "expires_at",
            "last_used_at",
        }
        assert body[0] == {name: value for name, value in mine.items() if name != "key"}
        assert body[1]["scopes"] == ["employees:write"]
        assert mine["key"] not in response.text and second["key"] not in response.text

    async def test_root_path_answers_the_same(self, normal_user_client, client_for, normal_user):
        await new_key(client_for, normal_user)
        root = await normal_user_client.get("/users/me/api-keys")
        assert (
            root.status_code == 200 and root.json() == (await normal_user_client.get(KEYS)).json()
        )


class TestRevokeKey:
    async def test_a_revoked_key_is_refused_at_once(
        self, app, normal_user_client, client_for, normal_user, stored, sessionmaker
    ):
        created = await new_key(client_for, normal_user)
        async with key_client(app, created["key"]) as program:
            assert (await program.get("/v1/employees/7")).status_code == 200

            response = await normal_user_client.delete(f"{KEYS}/{created['id']}")

            assert response.status_code == 204
            assert await stored_keys(sessionmaker) == []
            refused = await program.get("/v1/employees/7")
        assert refused.status_code == 401 and refused.json() == BAD_CREDENTIALS

    async def test_another_accounts_key_is_a_404_and_keeps_working(
        self, app, normal_user_client, client_for, admin_user, stored
    ):
        theirs = await new_key(client_for, admin_user)

        response = await normal_user_client.delete(f"{KEYS}/{theirs['id']}")

        assert response.status_code == 404
        assert response.json() == {"detail": "API key not found"}
        async with key_client(app, theirs["key"]) as program:
            assert (await program.get("/v1/employees/7")).status_code == 200

    async def test_unknown_id_is_404_and_malformed_id_422(self, normal_user_client):
        assert (await normal_user_client.delete(f"{KEYS}/{uuid.uuid4()}")).status_code == 404
        assert (await normal_user_client.delete(f"{KEYS}/not-a-uuid")).status_code == 422


class TestAdminManagesKeys:
    async def test_admin_lists_and_revokes_an_accounts_keys(
        self, app, admin_user_client, client_for, normal_user, stored, sessionmaker
    ):
        created = await new_key(client_for, normal_user)
        path = f"/v1/users/{normal_user.id}/api-keys"

        listed = await admin_user_client.get(path)
        assert listed.status_code == 200
        assert [key["id"] for key in listed.json()] == [created["id"]]
        assert created["key"] not in listed.text

        assert (await admin_user_client.delete(f"{path}/{created['id']}")).status_code == 204
        assert await stored_keys(sessionmaker) == []
        async with key_client(app, created["key"]) as program:
            assert (await program.get("/v1/employees/7")).status_code == 401

    async def test_a_key_of_another_account_is_a_404(
        self, admin_user_client, client_for, normal_user, admin_user, sessionmaker
    ):
        admins = await new_key(client_for, admin_user)
        path = f"/v1/users/{normal_user.id}/api-keys/{admins['id']}"

        assert (await admin_user_client.delete(path)).status_code == 404
        assert len(await stored_keys(sessionmaker)) == 1

    async def test_unknown_account_is_a_404(self, admin_user_client):
        path = f"/v1/users/{uuid.uuid4()}/api-keys"
        assert (await admin_user_client.get(path)).status_code == 404
        assert (await admin_user_client.delete(f"{path}/{uuid.uuid4()}")).status_code == 404

    async def test_regular_user_gets_403(
        self, normal_user_client, client_for, admin_user, sessionmaker
    ):
        admins = await new_key(client_for, admin_user)
        path = f"/v1/users/{admin_user.id}/api-keys"

        assert (await normal_user_client.get(path)).status_code == 403
        assert (await normal_user_client.delete(f"{path}/{admins['id']}")).status_code == 403
        assert len(await stored_keys(sessionmaker)) == 1


def made_up_key() -> str:
    return "erk_" + "A" * 54


# Text that a key is not, each answered like a bad token: (description, header value).
NOT_KEYS = [
    ("prefix alone", "erk_"),
    ("one character short", "erk_" + "A" * 53),
    ("one character long", "erk_" + "A" * 55),
    ("overlong", "erk_" + "A" * 5000),
    ("outside the alphabet", "erk_" + "!" * 54),
    ("a space inside", "erk_" + "A" * 26 + " " + "A" * 27),
    ("well-formed, unknown", made_up_key()),
]


class TestRefusedKeys:
    """Revoked, expired, unknown and malformed keys: the 401 of a bad token, to the byte."""

    async def bad_token_answer(self, app: Any, path: str) -> tuple[int, Any, str]:
        async with key_client(app, "not.a.token") as client:
            response = await client.get(path)
        return response.status_code, response.json(), response.headers["www-authenticate"]

    @pytest.mark.parametrize("path", ["/v1/employees/7", "/employees/7", "/v1/employees/"])
    @pytest.mark.parametrize(("case", "key"), NOT_KEYS, ids=[case for case, _ in NOT_KEYS])
    async def test_not_a_key(self, app, stored, path, case, key):
        async with key_client(app, key) as program:
            response = await program.get(path)
        assert (response.status_code, response.json(), response.headers["www-authenticate"]) == (
            await self.bad_token_answer(app, path)
        )

    @pytest.mark.parametrize(
        "raw",
        ["erk_" + "é" * 54, "erk_" + "ü" * 27],
        ids=["latin-1", "utf-8"],
    )
    @pytest.mark.parametrize("path", ["/v1/employees/7", "/v1/employees/"])
    async def test_non_ascii_keys(self, app, stored, path, raw):
        encoding = "latin-1" if "é" in raw else "utf-8"
        async with key_client(app, raw.encode(encoding)) as program:
            response = await program.get(path)
        assert response.status_code == 401 and response.json() == BAD_CREDENTIALS

    @pytest.mark.parametrize(
        "path", ["/v1/employees/7", "/v1/employees/", "/v1/employees/7/history"]
    )
    async def test_revoked_and_expired_keys(
        self, app, client_for, admin_user, stored, sessionmaker, path
    ):
        expired = await new_key(client_for, admin_user, "employees:read", "history:read")
        revoked = await new_key(client_for, admin_user, "employees:read", "history:read")
        await change_key(sessionmaker, expired["id"], expires_at=utc_now() - timedelta(seconds=1))
        async with client_for(admin_user) as owner:
            assert (await owner.delete(f"{KEYS}/{revoked['id']}")).status_code == 204
        expected = await self.bad_token_answer(app, path)
        for created in (expired, revoked):
            async with key_client(app, created["key"]) as program:
                response = await program.get(path)
            assert (
                response.status_code,
                response.json(),
                response.headers["www-authenticate"],
            ) == expected
        assert expected[:2] == (401, BAD_CREDENTIALS)

    async def test_refused_writes_change_nothing(self, app, stored, sessionmaker):
        async with key_client(app, made_up_key()) as program:
            response = await program.patch("/v1/employees/7", json={"city": "Paris"})
        assert response.status_code == 401
        async with key_client(app, "erk_") as program:
            created = await program.post("/v1/employees/", json=employee_payload(emp_id=8))
        assert created.status_code == 401


PASSWORD_CHANGE = {"current_password": USER_PASSWORD, "new_password": "another long password"}
REFRESH = {"refresh_token": "q3v9xN2dYV1o0QwJmRk0z7sT5uBcE8hLfPaG4iWjK6M"}
# Every sign-in and account operation, as a program would send it with its key.
ACCOUNT_CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/v1/users/me", {}),
    ("GET", KEYS, {}),
    ("POST", KEYS, {"json": {"name": "x", "scopes": ["employees:read"]}}),
    ("DELETE", KEYS + "/{key_id}", {}),
    ("POST", "/v1/users/me/password", {"json": PASSWORD_CHANGE}),
    ("POST", "/users/me/password", {"json": PASSWORD_CHANGE}),
    ("POST", "/v1/auth/logout", {"json": REFRESH}),
    ("POST", "/v1/auth/logout-all", {}),
    ("POST", "/v1/auth/token", {"data": {"username": "root.admin", "password": "x" * 12}}),
    ("POST", "/v1/auth/refresh", {"json": REFRESH}),
    ("POST", "/v1/auth/register", {"json": {"username": "newbie", "password": "x" * 12}}),
    ("GET", "/v1/users/", {}),
    ("GET", "/v1/users/{user_id}", {}),
    ("PATCH", "/v1/users/{user_id}", {"json": {"is_active": False}}),
    ("DELETE", "/v1/users/{user_id}", {}),
    ("GET", "/v1/users/{user_id}/history", {}),
    ("GET", "/v1/users/{user_id}/api-keys", {}),
    ("DELETE", "/v1/users/{user_id}/api-keys/{key_id}", {}),
]


class TestKeysCannotManageAccounts:
    @pytest.fixture
    async def program(
        self, app, client_for, admin_user
    ) -> AsyncIterator[tuple[AsyncClient, dict[str, Any]]]:
        created = await new_key(
            client_for, admin_user, "employees:read", "employees:write", "history:read"
        )
        async with key_client(app, created["key"]) as client:
            yield client, created

    @pytest.mark.parametrize(
        ("method", "path", "options"),
        ACCOUNT_CALLS,
        ids=[f"{method} {path}" for method, path, _ in ACCOUNT_CALLS],
    )
    async def test_every_account_operation_is_403(
        self, program, admin_user, sessionmaker, method, path, options
    ):
        client, created = program
        path = path.format(user_id=admin_user.id, key_id=created["id"])

        response = await client.request(method, path, **options)

        assert response.status_code == 403, response.text
        assert response.json() == REFUSED
        async with sessionmaker() as session:
            user = await session.get(User, admin_user.id)
            assert user is not None and user.is_active and user.token_version == 0
            assert user.hashed_password == admin_user.hashed_password
            assert (await session.execute(select(RefreshToken))).first() is None
            assert (
                await session.execute(select(User).where(User.username == "newbie"))
            ).first() is None
        assert [str(key.id) for key in await stored_keys(sessionmaker)] == [created["id"]]

    def test_the_list_covers_every_account_operation(self, app):
        documented = {
            (method.upper(), path)
            for path, item in app.openapi()["paths"].items()
            if path.startswith(("/v1/users", "/v1/auth"))
            for method in item
        }
        assert documented <= {(method, path) for method, path, _ in ACCOUNT_CALLS}

    async def test_invalid_keys_are_refused_alike(self, app):
        for key in (made_up_key(), "erk_"):
            async with key_client(app, key) as client:
                response = await client.get(KEYS)
            assert response.status_code == 403 and response.json() == REFUSED

    async def test_the_same_account_still_works_with_its_token(self, program, admin_user_client):
        assert (await admin_user_client.get(KEYS)).status_code == 200


class TestAccountHistory:
    async def test_made_and_revoked_keys_are_in_the_accounts_history(
        self, normal_user_client, admin_user_client, client_for, normal_user, admin_user
    ):
        first = await new_key(client_for, normal_user, "employees:read", name="export")
        second = await new_key(client_for, normal_user, "history:read", name="audit")
        assert (await normal_user_client.delete(f"{KEYS}/{first['id']}")).status_code == 204
        path = f"/v1/users/{normal_user.id}/api-keys/{second['id']}"
        assert (await admin_user_client.delete(path)).status_code == 204

        response = await admin_user_client.get(f"/v1/users/{normal_user.id}/history")

        assert response.status_code == 200
        events = [
            (event["kind"], event["actor_username"], event["changes"]["api_key"])
            for event in reversed(response.json())
        ]
        described = {
            key["id"]: {"id": key["id"], "name": key["name"], "scopes": key["scopes"]}
            for key in (first, second)
        }
        assert events == [
            ("api_key_created", "jane.doe", {"before": None, "after": described[first["id"]]}),
            ("api_key_created", "jane.doe", {"before": None, "after": described[second["id"]]}),
            ("api_key_revoked", "jane.doe", {"before": described[first["id"]], "after": None}),
            ("api_key_revoked", "root.admin", {"before": described[second["id"]], "after": None}),
        ]
        assert all(event["account_username"] == "jane.doe" for event in response.json())
        for key in (first, second):
            assert key["key"] not in response.text
            assert hashlib.sha256(key["key"].encode()).hexdigest() not in response.text

    async def test_a_refused_key_operation_records_nothing(
        self, normal_user_client, admin_user_client, client_for, normal_user, admin_user
    ):
        theirs = await new_key(client_for, admin_user)
        for _ in range(MAX_LIVE_KEYS):
            await new_key(client_for, normal_user)
        body = {"name": "one more", "scopes": ["employees:read"]}
        assert (await normal_user_client.post(KEYS, json=body)).status_code == 409
        assert (await normal_user_client.delete(f"{KEYS}/{theirs['id']}")).status_code == 404

        history = (await admin_user_client.get(f"/v1/users/{normal_user.id}/history")).json()
        assert [event["kind"] for event in history] == ["api_key_created"] * MAX_LIVE_KEYS
        mine = (await admin_user_client.get(f"/v1/users/{admin_user.id}/history")).json()
        assert [event["kind"] for event in mine] == ["api_key_created"]
