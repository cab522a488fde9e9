"""Refresh tokens, rotation with reuse detection, sign-out and password change (RFC 9700 4.14)."""

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts.models import RefreshToken, SignIn, User
from app.core.config import Settings
from tests.conftest import USER_PASSWORD

REFRESH_FAILED = {"detail": "Invalid or expired refresh token"}
BAD_CREDENTIALS = {"detail": "Could not validate credentials"}
NEW_PASSWORD = "staple gun orbit lantern"
Sessionmaker = async_sessionmaker[AsyncSession]


async def login(client: AsyncClient, password: str = USER_PASSWORD) -> dict[str, Any]:
    response = await client.post("/auth/token", data={"username": "jane.doe", "password": password})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def refresh(client: AsyncClient, token: str) -> Response:
    return await client.post("/auth/refresh", json={"refresh_token": token})


async def me(client: AsyncClient, access_token: str) -> Response:
    return await client.get("/users/me", headers={"Authorization": f"Bearer {access_token}"})


async def stored_tokens(sessionmaker: Sessionmaker) -> list[RefreshToken]:
    async with sessionmaker() as session:
        statement = select(RefreshToken).order_by(RefreshToken.created_at)  # type: ignore[arg-type]
        return list((await session.execute(statement)).scalars())


async def stored_token(sessionmaker: Sessionmaker, raw: str) -> RefreshToken:
    digest = hashlib.sha256(raw.encode()).hexdigest()
    async with sessionmaker() as session:
        statement = select(RefreshToken).where(RefreshToken.token_hash == digest)  # type: ignore[arg-type]
        return (await session.execute(statement)).scalar_one()


async def stored_user(sessionmaker: Sessionmaker, user_id: uuid.UUID) -> User:
    async with sessionmaker() as session:
        user = await session.get(User, user_id)
        assert user is not None
        return user


def assert_refresh_refused(response: Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == REFRESH_FAILED
    assert response.headers["www-authenticate"] == "Bearer"


class TestLoginIssuesRefreshToken:
    async def test_login_returns_a_refresh_token_and_its_lifetime(
        self, client: AsyncClient, normal_user: User, settings: Settings
    ) -> None:
        response = await client.post(
            "/auth/token", data={"username": "jane.doe", "password": USER_PASSWORD}
        )

        assert response.status_code == 200
        body = response.json()
        assert set(body) == {
            "access_token",
            "token_type",
            "expires_in",
            "refresh_token",
            "refresh_expires_in",
        }
        assert body["refresh_expires_in"] == settings.refresh_token_expire_days * 86400 == 604800
        assert len(body["refresh_token"]) >= 43
        assert body["refresh_token"].count(".") == 0  # opaque, not a JWT
        assert response.headers["cache-control"] == "no-store"

    async def test_only_a_hash_of_the_refresh_token_is_stored(
        self, client: AsyncClient, normal_user: User, sessionmaker: Sessionmaker
    ) -> None:
        raw = (await login(client))["refresh_token"]

        (row,) = await stored_tokens(sessionmaker)
        assert row.token_hash == hashlib.sha256(raw.encode()).hexdigest()
        assert row.user_id == normal_user.id
        assert row.used_at is None and row.revoked_at is None
        expected_expiry = datetime.now(UTC) + timedelta(days=7)
        assert abs((row.expires_at - expected_expiry).total_seconds()) < 60
        async with sessionmaker() as session:
            for table in ("refresh_token", "app_user"):
                rows = (await session.execute(text(f"SELECT * FROM {table}"))).all()  # noqa: S608
                assert rows and all(raw not in str(value) for r in rows for value in r)

    async def test_each_login_starts_a_new_family(
        self, client: AsyncClient, normal_user: User, sessionmaker: Sessionmaker
    ) -> None:
        first = (await login(client))["refresh_token"]
        second = (await login(client))["refresh_token"]

        assert first != second
        rows = await stored_tokens(sessionmaker)
        assert len({row.family_id for row in rows}) == 2

    async def test_signing_in_removes_the_accounts_expired_tokens(
        self,
        client: AsyncClient,
        normal_user: User,
        make_user: Callable[..., Any],
        sessionmaker: Sessionmaker,
    ) -> None:
        """Nothing else deletes refresh-token rows: without this the table only grows. An expired
        token is refused before anything else is looked at, so its row has no use left."""
        other = await make_user(username="other.user")
        expired = datetime.now(UTC) - timedelta(seconds=1)
        stale, live, others = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        async with sessionmaker() as session:
            for user_id, family, expires_at in (
                (normal_user.id, stale, expired),
                (normal_user.id, live, datetime.now(UTC) + timedelta(days=1)),
                (other.id, others, expired),  # another account's: its own sign-in removes it
            ):
                # Sign-ins that outlive their tokens: only the tokens are expired.
                later = datetime.now(UTC) + timedelta(days=1)
                session.add(SignIn(id=family, user_id=user_id, expires_at=later))
                await session.flush()
                session.add(
                    RefreshToken(
                        user_id=user_id,
                        family_id=family,
                        token_version=0,
                        token_hash=uuid.uuid4().hex * 2,
                        expires_at=expires_at,
                    )
                )
            await session.commit()

        issued = (await login(client))["refresh_token"]

        families = {row.family_id for row in await stored_tokens(sessionmaker)}
        new = (await stored_token(sessionmaker, issued)).family_id
        assert families == {live, others, new}

    async def test_lifetime_follows_the_setting(
        self, app: Any, client: AsyncClient, normal_user: User, settings: Settings
    ) -> None:

        short = settings.model_copy(update={"refresh_token_expire_days": 2})
        app.state.settings = short

        assert (await login(client))["refresh_expires_in"] == 2 * 86400


class TestRefresh:
    async def test_refresh_returns_a_new_pair_in_the_same_family(
        self, client: AsyncClient, normal_user: User, sessionmaker: Sessionmaker
    ) -> None:
        tokens = await login(client)

        response = await refresh(client, tokens["refresh_token"])

        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert body["token_type"] == "bearer"
        assert body["refresh_token"] != tokens["refresh_token"]
        assert body["access_token"] != tokens["access_token"]
        assert (await me(client, body["access_token"])).json()["id"] == str(normal_user.id)
        old = await stored_token(sessionmaker, tokens["refresh_token"])
        new = await stored_token(sessionmaker, body["refresh_token"])
        assert old.used_at is not None and old.revoked_at is None
        assert new.used_at is None and new.revoked_at is None
        assert old.family_id == new.family_id

    async def test_a_used_refresh_token_is_refused(
        self, client: AsyncClient, normal_user: User
    ) -> None:
        old = (await login(client))["refresh_token"]
        assert (await refresh(client, old)).status_code == 200

        assert_refresh_refused(await refresh(client, old))

    async def test_reuse_revokes_the_whole_family(
        self, client: AsyncClient, normal_user: User, sessionmaker: Sessionmaker
    ) -> None:
        first = (await login(client))["refresh_token"]
        other_session = (await login(client))["refresh_token"]
        second = (await refresh(client, first)).json()["refresh_token"]
        newest = (await refresh(client, second)).json()["refresh_token"]

        # Someone replays the first token: a copy exists, so the whole sign-in is ended.
        assert_refresh_refused(await refresh(client, first))

        assert_refresh_refused(await refresh(client, newest))
        family = (await stored_token(sessionmaker, first)).family_id
        rows = [row for row in await stored_tokens(sessionmaker) if row.family_id == family]
        assert len(rows) == 3 and all(row.revoked_at is not None for row in rows)
        # The user's other sign-in is a different family and carries on.
        assert (await refresh(client, other_session)).status_code == 200

    async def test_unknown_refresh_token_is_refused(
        self, client: AsyncClient, normal_user: User
    ) -> None:
        await login(client)

        assert_refresh_refused(await refresh(client, "x" * 43))

    async def test_expired_refresh_token_is_refused(
        self, client: AsyncClient, normal_user: User, session: AsyncSession
    ) -> None:
        raw = (await login(client))["refresh_token"]
        await session.execute(
            update(RefreshToken).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()

        assert_refresh_refused(await refresh(client, raw))

    async def test_access_token_is_not_a_refresh_token(
        self, client: AsyncClient, normal_user: User
    ) -> None:
        access = (await login(client))["access_token"]

        assert_refresh_refused(await refresh(client, access))

    async def test_refresh_token_is_not_an_access_token(
        self, client: AsyncClient, normal_user: User
    ) -> None:
        raw = (await login(client))["refresh_token"]

        response = await me(client, raw)

        assert response.status_code == 401
        assert response.json() == BAD_CREDENTIALS

    async def test_deactivated_user_cannot_refresh(
        self, client: AsyncClient, normal_user: User, session: AsyncSession
    ) -> None:
        raw = (await login(client))["refresh_token"]
        await session.execute(update(User).values(is_active=False))
        await session.commit()

        assert_refresh_refused(await refresh(client, raw))

    async def test_deleted_user_cannot_refresh(
        self, client: AsyncClient, normal_user: User, sessionmaker: Sessionmaker
    ) -> None:
        raw = (await login(client))["refresh_token"]
        async with sessionmaker() as session:
            await session.delete(await session.get(User, normal_user.id))
            await session.commit()

        assert_refresh_refused(await refresh(client, raw))
        assert await stored_tokens(sessionmaker) == []  # ON DELETE CASCADE

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"refresh_token": ""},
            {"refresh_token": "abc\x00def"},
            {"refresh_token": "abc\ndef"},
            {"refresh_token": "A" * 1025},
            {"refresh_token": 12345},
            {"refresh_token": "abc", "grant_type": "refresh_token"},
        ],
        ids=["missing", "empty", "nul", "newline", "too-long", "not-a-string", "extra-field"],
    )
    async def test_malformed_body_gets_422(self, client: AsyncClient, body: dict[str, Any]) -> None:
        response = await client.post("/auth/refresh", json=body)

        assert response.status_code == 422
        assert all("input" not in item for item in response.json()["detail"])

    @pytest.mark.postgres_only
    async def test_concurrent_refreshes_with_one_token_let_exactly_one_through(
        self, client: AsyncClient, normal_user: User, sessionmaker: Sessionmaker
    ) -> None:
        raw = (await login(client))["refresh_token"]

        responses = await asyncio.gather(*(refresh(client, raw) for _ in range(20)))

        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200] + [401] * 19
        rows = await stored_tokens(sessionmaker)
        assert len(rows) == 2  # the presented token and exactly one successor
        assert sum(row.used_at is not None for row in rows) == 1


class TestLogout:
    async def test_logout_revokes_the_family(
        self, client: AsyncClient, normal_user: User, sessionmaker: Sessionmaker
    ) -> None:
        first = (await login(client))["refresh_token"]
        newest = (await refresh(client, first)).json()["refresh_token"]
        other_session = (await login(client))["refresh_token"]

        response = await client.post("/auth/logout", json={"refresh_token": newest})

        assert response.status_code == 204
        assert response.content == b""
        assert response.headers["cache-control"] == "no-store"
        assert_refresh_refused(await refresh(client, newest))
        family = (await stored_token(sessionmaker, first)).family_id
        rows = [row for row in await stored_tokens(sessionmaker) if row.family_id == family]
        assert len(rows) == 2 and all(row.revoked_at is not None for row in rows)
        assert (await refresh(client, other_session)).status_code == 200

    async def test_logout_is_idempotent_and_ignores_unknown_tokens(
        self, client: AsyncClient, normal_user: User
    ) -> None:
        raw = (await login(client))["refresh_token"]

        for token in (raw, raw, "never-issued"):
            response = await client.post("/auth/logout", json={"refresh_token": token})
            assert response.status_code == 204

    async def test_logout_refuses_extra_fields(self, client: AsyncClient) -> None:
        response = await client.post("/auth/logout", json={"refresh_token": "a", "all": True})

        assert response.status_code == 422


class TestLogoutAll:
    async def test_every_session_ends_access_tokens_included(
        self, client: AsyncClient, normal_user: User, sessionmaker: Sessionmaker
    ) -> None:
        laptop = await login(client)
        phone = await login(client)
        assert (await me(client, phone["access_token"])).status_code == 200

        response = await client.post(
            "/auth/logout-all", headers={"Authorization": f"Bearer {laptop['access_token']}"}
        )

        assert response.status_code == 204
        assert response.headers["cache-control"] == "no-store"
        for tokens in (laptop, phone):
            assert (await me(client, tokens["access_token"])).json() == BAD_CREDENTIALS
            assert_refresh_refused(await refresh(client, tokens["refresh_token"]))
        assert (await stored_user(sessionmaker, normal_user.id)).token_version == 1
        assert all(row.revoked_at is not None for row in await stored_tokens(sessionmaker))

    async def test_signing_in_again_works(self, client: AsyncClient, normal_user: User) -> None:
        old = await login(client)
        headers = {"Authorization": f"Bearer {old['access_token']}"}
        assert (await client.post("/auth/logout-all", headers=headers)).status_code == 204

        fresh = await login(client)

        assert (await me(client, fresh["access_token"])).status_code == 200
        renewed = (await refresh(client, fresh["refresh_token"])).json()
        assert (await me(client, renewed["access_token"])).status_code == 200

    async def test_other_users_are_not_affected(
        self,
        client: AsyncClient,
        normal_user: User,
        admin_user: User,
        token_for: Callable[[User], str],
    ) -> None:
        admin_token = token_for(admin_user)
        mine = await login(client)

        response = await client.post(
            "/auth/logout-all", headers={"Authorization": f"Bearer {admin_token}"}
        )

        assert response.status_code == 204
        assert (await me(client, mine["access_token"])).status_code == 200
        assert (await refresh(client, mine["refresh_token"])).status_code == 200

    async def test_needs_a_bearer_token(self, client: AsyncClient) -> None:
        response = await client.post("/auth/logout-all")

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"


class TestChangePassword:
    async def change(
        self, client: AsyncClient, access_token: str, current: str, new: str
    ) -> Response:
        return await client.post(
            "/users/me/password",
            json={"current_password": current, "new_password": new},
            headers={"Authorization": f"Bearer {access_token}"},
        )

    async def test_success_ends_every_session_and_swaps_the_password(
        self, client: AsyncClient, normal_user: User, sessionmaker: Sessionmaker
    ) -> None:
        laptop = await login(client)
        phone = await login(client)

        response = await self.change(client, laptop["access_token"], USER_PASSWORD, NEW_PASSWORD)

        assert response.status_code == 204
        for tokens in (laptop, phone):
            assert (await me(client, tokens["access_token"])).json() == BAD_CREDENTIALS
            assert_refresh_refused(await refresh(client, tokens["refresh_token"]))
        old_login = await client.post(
            "/auth/token", data={"username": "jane.doe", "password": USER_PASSWORD}
        )
        assert old_login.status_code == 401
        fresh = await login(client, NEW_PASSWORD)
        assert (await me(client, fresh["access_token"])).status_code == 200
        stored = await stored_user(sessionmaker, normal_user.id)
        assert stored.token_version == 1
        assert stored.hashed_password.startswith("$argon2id$")

    async def test_wrong_current_password_gets_403_and_changes_nothing(
        self, client: AsyncClient, normal_user: User, sessionmaker: Sessionmaker
    ) -> None:
        tokens = await login(client)
        before = await stored_user(sessionmaker, normal_user.id)

        response = await self.change(
            client, tokens["access_token"], "not-my-password", NEW_PASSWORD
        )

        assert response.status_code == 403
        assert response.json() == {"detail": "Current password is incorrect"}
        after = await stored_user(sessionmaker, normal_user.id)
        assert after.hashed_password == before.hashed_password
        assert after.token_version == before.token_version == 0
        assert (await me(client, tokens["access_token"])).status_code == 200
        assert (await refresh(client, tokens["refresh_token"])).status_code == 200

    @pytest.mark.parametrize(
        ("new", "message"),
        [
            ("tiny7", "at least 8 characters"),
            ("x" * 129, "at most 128 characters"),
            ("password123", "most common passwords"),
            ("JANE.DOE", "same as the username"),
            (USER_PASSWORD, "differ from the current password"),
            ("new-pass\x00word", "control characters"),
        ],
        ids=["too-short", "too-long", "common", "username", "unchanged", "nul"],
    )
    async def test_unacceptable_new_password_gets_422(
        self,
        client: AsyncClient,
        normal_user: User,
        sessionmaker: Sessionmaker,
        new: str,
        message: str,
    ) -> None:
        tokens = await login(client)

        response = await self.change(client, tokens["access_token"], USER_PASSWORD, new)

        assert response.status_code == 422, response.text
        (issue,) = response.json()["detail"]
        assert issue["loc"] == ["body", "new_password"]
        assert message in issue["msg"]
        assert new not in response.text
        assert (await stored_user(sessionmaker, normal_user.id)).token_version == 0

    async def test_extra_fields_are_refused(self, client: AsyncClient, normal_user: User) -> None:
        tokens = await login(client)

        response = await client.post(
            "/users/me/password",
            json={"current_password": USER_PASSWORD, "new_password": NEW_PASSWORD, "x": 1},
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )

        assert response.status_code == 422

    async def test_needs_a_bearer_token(self, client: AsyncClient) -> None:
        response = await client.post(
            "/users/me/password",
            json={"current_password": USER_PASSWORD, "new_password": NEW_PASSWORD},
        )

        assert response.status_code == 401
