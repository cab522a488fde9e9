"""Sign-in (`POST /auth/token`) and sign-up (`POST /auth/register`)."""

from collections.abc import Callable
from typing import Any

import bcrypt
import pytest
from httpx import AsyncClient, Response
from jose import jwt
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts.models import User
from app.core.config import Settings
from app.security.passwords import password_context
from tests.conftest import USER_PASSWORD, make_settings

LOGIN_FAILED = {"detail": "Incorrect username or password"}
NEW_PASSWORD = "a-brand-new-password"
USER_FIELDS = {"id", "username", "role", "is_admin", "is_active", "created_at"}


async def login(client: AsyncClient, username: str, password: str) -> Response:
    return await client.post("/auth/token", data={"username": username, "password": password})


async def register(client: AsyncClient, **body: Any) -> Response:
    return await client.post("/auth/register", json=body)


async def stored_user(sessionmaker: async_sessionmaker[AsyncSession], username: str) -> User | None:
    # A fresh session, so the row is read from the database rather than an identity map.
    async with sessionmaker() as session:
        statement = select(User).where(User.username == username)
        return (await session.execute(statement)).scalar_one_or_none()


async def user_count(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return (await session.execute(select(func.count()).select_from(User))).scalar_one()


async def store_legacy_bcrypt_hash(session: AsyncSession, user: User, password: str) -> str:
    legacy = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    row = await session.get(User, user.id)
    assert row is not None
    row.hashed_password = legacy
    await session.commit()
    return legacy


def assert_no_input_echo(response: Response, secret: str) -> None:
    assert secret not in response.text
    assert all("input" not in item for item in response.json()["detail"])


class TestLogin:
    async def test_valid_credentials_get_a_bearer_token(
        self, client: AsyncClient, normal_user: User, settings: Settings
    ) -> None:
        response = await login(client, "jane.doe", USER_PASSWORD)

        assert response.status_code == 200
        body = response.json()
        assert set(body) == {
            "access_token",
            "token_type",
            "expires_in",
            "refresh_token",
            "refresh_expires_in",
        }
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == settings.access_token_expire_minutes * 60 == 1800
        assert response.headers["cache-control"] == "no-store"

    async def test_issued_token_works_on_users_me(
        self, client: AsyncClient, normal_user: User
    ) -> None:
        token = (await login(client, "jane.doe", USER_PASSWORD)).json()["access_token"]

        response = await client.get("/users/me", headers={"Authorization": f"Bearer {token}"})

        assert response.status_code == 200
        assert response.json()["id"] == str(normal_user.id)
        assert response.json()["username"] == "jane.doe"

    async def test_expires_in_follows_the_configured_lifetime(
        self, app: Any, client: AsyncClient, normal_user: User, settings: Settings
    ) -> None:
        custom = make_settings(settings.database_url, access_token_expire_minutes=7)
        app.state.settings = custom

        response = await login(client, "jane.doe", USER_PASSWORD)

        assert response.status_code == 200
        assert response.json()["expires_in"] == 420
        claims = jwt.get_unverified_claims(response.json()["access_token"])
        assert claims["exp"] - claims["iat"] == 420

    @pytest.mark.parametrize("username", ["JANE.DOE", "Jane.Doe", "jAnE.dOe"])
    async def test_username_is_case_insensitive(
        self, client: AsyncClient, normal_user: User, username: str
    ) -> None:
        token = (await login(client, username, USER_PASSWORD)).json()["access_token"]

        response = await client.get("/users/me", headers={"Authorization": f"Bearer {token}"})

        assert response.status_code == 200
        assert response.json()["id"] == str(normal_user.id)

    async def test_wrong_password_gets_401(self, client: AsyncClient, normal_user: User) -> None:
        response = await login(client, "jane.doe", "not-the-password")

        assert response.status_code == 401
        assert response.json() == LOGIN_FAILED
        assert response.headers["www-authenticate"] == "Bearer"
        assert "access_token" not in response.text

    async def test_unknown_user_and_inactive_user_get_the_same_401_as_wrong_password(
        self, client: AsyncClient, normal_user: User, make_user: Callable[..., Any]
    ) -> None:
        await make_user("sleeping.user", is_active=False)

        responses = [
            await login(client, "jane.doe", "not-the-password"),
            await login(client, "nobody.here", USER_PASSWORD),
            await login(client, "sleeping.user", USER_PASSWORD),
        ]

        assert [r.status_code for r in responses] == [401, 401, 401]
        assert [r.json() for r in responses] == [LOGIN_FAILED] * 3
        assert [r.headers["www-authenticate"] for r in responses] == ["Bearer"] * 3
        assert len({r.content for r in responses}) == 1

    @pytest.mark.parametrize(
        ("data", "missing"),
        [
            ({"username": "jane.doe"}, ["password"]),
            ({"password": USER_PASSWORD}, ["username"]),
            ({}, ["username", "password"]),
        ],
    )
    async def test_missing_form_field_gets_422(
        self, client: AsyncClient, normal_user: User, data: dict[str, str], missing: list[str]
    ) -> None:
        response = await client.post("/auth/token", data=data)

        assert response.status_code == 422
        locs = [item["loc"] for item in response.json()["detail"]]
        assert locs == [["body", field] for field in missing]

    @pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\n", "\x7f"])
    async def test_control_character_in_username_gets_422(
        self, client: AsyncClient, normal_user: User, char: str
    ) -> None:
        response = await login(client, f"jane{char}doe", USER_PASSWORD)

        assert response.status_code == 422
        assert [item["loc"] for item in response.json()["detail"]] == [["body", "username"]]
        assert_no_input_echo(response, USER_PASSWORD)

    async def test_nul_in_password_gets_422(self, client: AsyncClient, normal_user: User) -> None:
        response = await login(client, "jane.doe", USER_PASSWORD + "\x00")

        assert response.status_code == 422
        assert [item["loc"] for item in response.json()["detail"]] == [["body", "password"]]
        assert_no_input_echo(response, USER_PASSWORD)

    @pytest.mark.parametrize("length", [129, 1024])
    async def test_overlong_password_gets_401_even_for_a_legacy_bcrypt_hash(
        self, client: AsyncClient, normal_user: User, session: AsyncSession, length: int
    ) -> None:
        # bcrypt 5 raises on more than 72 bytes; the length check must answer first.
        await store_legacy_bcrypt_hash(session, normal_user, USER_PASSWORD)
        password = (USER_PASSWORD * 100)[:length]

        response = await login(client, "jane.doe", password)

        assert response.status_code == 401
        assert response.json() == LOGIN_FAILED
        assert response.headers["www-authenticate"] == "Bearer"

    @pytest.mark.parametrize("length", [129, 1024])
    async def test_overlong_password_gets_401(
        self, client: AsyncClient, normal_user: User, length: int
    ) -> None:
        response = await login(client, "jane.doe", (USER_PASSWORD * 100)[:length])

        assert response.status_code == 401
        assert response.json() == LOGIN_FAILED

    async def test_long_wrong_password_against_legacy_bcrypt_hash_gets_401(
        self, client: AsyncClient, normal_user: User, session: AsyncSession
    ) -> None:
        await store_legacy_bcrypt_hash(session, normal_user, USER_PASSWORD)

        response = await login(client, "jane.doe", "x" * 100)

        assert response.status_code == 401
        assert response.json() == LOGIN_FAILED

    async def test_legacy_bcrypt_hash_verifies_and_is_upgraded_to_argon2id(
        self,
        client: AsyncClient,
        normal_user: User,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        legacy = await store_legacy_bcrypt_hash(session, normal_user, USER_PASSWORD)
        assert legacy.startswith("$2b$")

        response = await login(client, "jane.doe", USER_PASSWORD)

        assert response.status_code == 200
        row = await stored_user(sessionmaker, "jane.doe")
        assert row is not None
        assert row.hashed_password.startswith("$argon2id$")
        assert password_context.verify(USER_PASSWORD, row.hashed_password)

    async def test_legacy_bcrypt_hash_is_kept_after_a_wrong_password(
        self,
        client: AsyncClient,
        normal_user: User,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        legacy = await store_legacy_bcrypt_hash(session, normal_user, USER_PASSWORD)

        response = await login(client, "jane.doe", "not-the-password")

        assert response.status_code == 401
        row = await stored_user(sessionmaker, "jane.doe")
        assert row is not None
        assert row.hashed_password == legacy


class TestRegister:
    async def test_new_account_gets_201_without_any_password(
        self, client: AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        response = await register(client, username="new.user", password=NEW_PASSWORD)

        assert response.status_code == 201
        body = response.json()
        assert set(body) == USER_FIELDS
        assert body["username"] == "new.user"
        assert body["is_admin"] is False
        assert body["is_active"] is True
        row = await stored_user(sessionmaker, "new.user")
        assert row is not None
        assert body["id"] == str(row.id)
        assert NEW_PASSWORD not in response.text
        assert row.hashed_password not in response.text
        assert "password" not in response.text
        assert "$argon2" not in response.text

    async def test_password_is_stored_as_argon2id(
        self, client: AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        response = await register(client, username="new.user", password=NEW_PASSWORD)

        assert response.status_code == 201
        row = await stored_user(sessionmaker, "new.user")
        assert row is not None
        assert row.hashed_password.startswith("$argon2id$")
        assert password_context.verify(NEW_PASSWORD, row.hashed_password)

    async def test_new_account_can_log_in(self, client: AsyncClient) -> None:
        await register(client, username="new.user", password=NEW_PASSWORD)

        response = await login(client, "new.user", NEW_PASSWORD)

        assert response.status_code == 200
        assert response.json()["token_type"] == "bearer"

    @pytest.mark.parametrize(
        "extra", [{"is_admin": True}, {"is_active": False}, {"hashed_password": "x"}]
    )
    async def test_extra_field_gets_422_and_creates_no_user(
        self,
        client: AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        extra: dict[str, Any],
    ) -> None:
        response = await register(client, username="sneaky", password=NEW_PASSWORD, **extra)

        assert response.status_code == 422
        assert [item["type"] for item in response.json()["detail"]] == ["extra_forbidden"]
        assert await stored_user(sessionmaker, "sneaky") is None
        assert await user_count(sessionmaker) == 0

    @pytest.mark.parametrize("username", ["jane.doe", "Jane.Doe", "JANE.DOE"])
    async def test_taken_username_gets_409_in_any_case(
        self,
        client: AsyncClient,
        normal_user: User,
        sessionmaker: async_sessionmaker[AsyncSession],
        username: str,
    ) -> None:
        response = await register(client, username=username, password=NEW_PASSWORD)

        assert response.status_code == 409
        assert response.json() == {"detail": "Username is already taken"}
        assert await user_count(sessionmaker) == 1
        row = await stored_user(sessionmaker, "jane.doe")
        assert row is not None
        assert password_context.verify(USER_PASSWORD, row.hashed_password)

    async def test_second_registration_differing_only_in_case_gets_409(
        self, client: AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        first = await register(client, username="Jane.Doe", password=NEW_PASSWORD)
        second = await register(client, username="jane.doe", password=NEW_PASSWORD)

        assert first.status_code == 201
        assert second.status_code == 409
        assert await user_count(sessionmaker) == 1

    @pytest.mark.parametrize(
        "username",
        [
            "ab",
            "a" * 51,
            "jane doe",
            "jané",
            "jane\x00doe",
            "jane.doe\n",
            "jane/doe",
            "jane@doe",
            "",
        ],
        ids=[
            "too-short",
            "too-long",
            "space",
            "unicode-letter",
            "nul",
            "trailing-newline",
            "slash",
            "at-sign",
            "empty",
        ],
    )
    async def test_invalid_username_gets_422(
        self,
        client: AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        username: str,
    ) -> None:
        response = await register(client, username=username, password=NEW_PASSWORD)

        assert response.status_code == 422
        assert [item["loc"] for item in response.json()["detail"]] == [["body", "username"]]
        assert_no_input_echo(response, NEW_PASSWORD)
        assert await user_count(sessionmaker) == 0

    @pytest.mark.parametrize("username", ["abc", "a" * 50, "Jane_Doe-1.x"])
    async def test_username_at_the_limits_is_accepted(
        self, client: AsyncClient, username: str
    ) -> None:
        response = await register(client, username=username, password=NEW_PASSWORD)

        assert response.status_code == 201
        assert response.json()["username"] == username

    @pytest.mark.parametrize("length", [7, 129, 0])
    async def test_password_of_wrong_length_gets_422_without_echo(
        self,
        client: AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        length: int,
    ) -> None:
        password = ("Secret-pw-" * 20)[:length]

        response = await register(client, username="new.user", password=password)

        assert response.status_code == 422
        assert [item["loc"] for item in response.json()["detail"]] == [["body", "password"]]
        if password:
            assert_no_input_echo(response, password)
        assert await user_count(sessionmaker) == 0

    @pytest.mark.parametrize("length", [8, 128])
    async def test_password_at_the_limits_is_accepted(
        self,
        client: AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        length: int,
    ) -> None:
        password = ("Secret-pw-" * 20)[:length]

        response = await register(client, username="new.user", password=password)

        assert response.status_code == 201
        assert password not in response.text
        row = await stored_user(sessionmaker, "new.user")
        assert row is not None
        assert password_context.verify(password, row.hashed_password)
        assert (await login(client, "new.user", password)).status_code == 200

    @pytest.mark.parametrize(
        "raw_password",
        [r"Secret-pw\u0000xyz", r"Secret-pw\ud800xyz", r"Secret-pw\u001bxyz"],
        ids=["nul", "lone-surrogate", "escape"],
    )
    async def test_password_with_nul_or_surrogate_gets_422_not_500(
        self,
        client: AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        raw_password: str,
    ) -> None:
        # Raw JSON: httpx cannot encode a lone surrogate, but a client can still send "\ud800".
        content = f'{{"username": "new.user", "password": "{raw_password}"}}'

        response = await client.post(
            "/auth/register", content=content, headers={"Content-Type": "application/json"}
        )

        assert response.status_code == 422
        assert [item["loc"] for item in response.json()["detail"]] == [["body", "password"]]
        assert_no_input_echo(response, "Secret-pw")
        assert await user_count(sessionmaker) == 0

    async def test_validation_error_never_echoes_the_password(self, client: AsyncClient) -> None:
        # Both fields invalid: the body lists both, and neither value comes back.
        password = "Secret-pw-" * 13

        response = await register(client, username="x", password=password)

        assert response.status_code == 422
        locs = sorted(item["loc"] for item in response.json()["detail"])
        assert locs == [["body", "password"], ["body", "username"]]
        assert_no_input_echo(response, password)
        assert "Secret-pw" not in response.text
