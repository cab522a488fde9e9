"""A sign-in that keeps refreshing cannot outlive a revocation that races it (PostgreSQL).

Session A refreshes in a loop with its newest refresh token while session B ends every session
(sign-out everywhere, a password change, an admin deactivating the account) or A's own sign-in
(sign-out). Once the revocation has answered, nothing A holds may work: not its newest refresh
token, and not any access token it was given. A sign-out of A's alone leaves B working.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from httpx import AsyncClient

from app.accounts.models import User
from tests.conftest import USER_PASSWORD

pytestmark = pytest.mark.postgres_only

TRIALS = 10
NEW_PASSWORDS = [f"new password number {n:02d}" for n in range(TRIALS + 1)]


class RefreshLoop:
    """Session A: refreshes with its newest token until refused, keeping every token it got."""

    def __init__(self, client: AsyncClient, tokens: dict[str, Any]) -> None:
        self.client = client
        self.refresh_token: str = tokens["refresh_token"]
        self.access_tokens: list[str] = [tokens["access_token"]]
        self.refreshes = 0
        self.started = asyncio.Event()
        self.stop = False

    async def run(self) -> None:
        while not self.stop:
            response = await self.client.post(
                "/auth/refresh", json={"refresh_token": self.refresh_token}
            )
            assert response.status_code in (200, 401), response.text
            if response.status_code == 401:
                return
            body = response.json()
            self.refresh_token = body["refresh_token"]
            self.access_tokens.append(body["access_token"])
            self.refreshes += 1
            if self.refreshes >= 2:
                self.started.set()


async def sign_in(client: AsyncClient, password: str) -> dict[str, Any]:
    response = await client.post("/auth/token", data={"username": "jane.doe", "password": password})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def race(
    client: AsyncClient, password: str, revoke: Callable[[dict[str, Any]], Awaitable[None]]
) -> list[str]:
    """One trial: what still works of session A's tokens after `revoke` answered (want none)."""
    loop = RefreshLoop(client, await sign_in(client, password))
    session_b = await sign_in(client, password)
    runner = asyncio.create_task(loop.run())
    await asyncio.wait_for(loop.started.wait(), timeout=20)
    await revoke(session_b | {"a_refresh_token": loop.refresh_token})
    # Let the loop run on past the revocation: a successor it wrote meanwhile must die too.
    await asyncio.sleep(0.05)
    loop.stop = True
    await runner
    survivors = []
    refreshed = await client.post("/auth/refresh", json={"refresh_token": loop.refresh_token})
    if refreshed.status_code != 401:
        survivors.append(f"refresh token: {refreshed.status_code}")
    for access in {*loop.access_tokens, refreshed.json().get("access_token", "")} - {""}:
        me = await client.get("/users/me", headers={"Authorization": f"Bearer {access}"})
        if me.status_code != 401:
            survivors.append(f"access token: {me.status_code}")
    return survivors


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


class TestRevocationRacingARefreshLoop:
    async def test_sign_out_everywhere(self, client: AsyncClient, normal_user: User) -> None:
        async def revoke(session_b: dict[str, Any]) -> None:
            response = await client.post("/auth/logout-all", headers=bearer(session_b))
            assert response.status_code == 204

        survivors = [await race(client, USER_PASSWORD, revoke) for _ in range(TRIALS)]

        assert survivors == [[]] * TRIALS

    async def test_password_change(self, client: AsyncClient, normal_user: User) -> None:
        passwords = iter(NEW_PASSWORDS)
        current = USER_PASSWORD
        survivors = []
        for _ in range(TRIALS):
            new = next(passwords)

            async def revoke(session_b: dict[str, Any], old: str = current, new: str = new) -> None:
                body = {"current_password": old, "new_password": new}
                response = await client.post(
                    "/users/me/password", json=body, headers=bearer(session_b)
                )
                assert response.status_code == 204, response.text

            survivors.append(await race(client, current, revoke))
            current = new

        assert survivors == [[]] * TRIALS

    async def test_admin_deactivating_the_account(
        self, client: AsyncClient, normal_user: User, admin_user_client: AsyncClient
    ) -> None:
        path = f"/users/{normal_user.id}"

        async def revoke(_: dict[str, Any]) -> None:
            response = await admin_user_client.patch(path, json={"is_active": False})
            assert response.status_code == 200, response.text

        survivors = []
        for _ in range(TRIALS):
            survivors.append(await race(client, USER_PASSWORD, revoke))
            reactivated = await admin_user_client.patch(path, json={"is_active": True})
            assert reactivated.status_code == 200

        assert survivors == [[]] * TRIALS

    async def test_sign_out_of_that_session(self, client: AsyncClient, normal_user: User) -> None:
        b_sessions = []

        async def revoke(session_b: dict[str, Any]) -> None:
            # B signs session A out with a refresh token of A's it has seen (a stolen laptop's).
            b_sessions.append(session_b)
            body = {"refresh_token": session_b["a_refresh_token"]}
            response = await client.post("/auth/logout", json=body)
            assert response.status_code == 204

        survivors = [await race(client, USER_PASSWORD, revoke) for _ in range(TRIALS)]

        assert survivors == [[]] * TRIALS
        for session_b in b_sessions:  # only A's sign-in ended
            me = await client.get("/users/me", headers=bearer(session_b))
            assert me.status_code == 200


async def refresh_and_logout_at_once(client: AsyncClient) -> tuple[int, list[str]]:
    """Sign in, then refresh and sign out with the one refresh token at the same moment: the
    refresh's status, and what still works afterwards of the sign-in's tokens (want none)."""
    tokens = await sign_in(client, USER_PASSWORD)
    refreshed, logged_out = await asyncio.gather(
        client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
        client.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]}),
    )
    assert logged_out.status_code == 204
    assert refreshed.status_code in (200, 401), refreshed.text
    survivors = []
    access_tokens = [tokens["access_token"]]
    if refreshed.status_code == 200:
        successor = refreshed.json()
        access_tokens.append(successor["access_token"])
        again = await client.post(
            "/auth/refresh", json={"refresh_token": successor["refresh_token"]}
        )
        if again.status_code != 401:
            survivors.append(f"successor refresh token: {again.status_code}")
    for access in access_tokens:
        me = await client.get("/users/me", headers={"Authorization": f"Bearer {access}"})
        if me.status_code != 401:
            survivors.append(f"access token: {me.status_code}")
    return refreshed.status_code, survivors


class TestSignOutRacingARefreshOfTheSameToken:
    async def test_no_live_successor_is_left(self, client: AsyncClient, normal_user: User) -> None:
        """Whichever of the two the database serves first, the sign-in ends: a successor the
        refresh wrote is revoked with it, and the access tokens of both die."""
        other = await sign_in(client, USER_PASSWORD)
        outcomes = [await refresh_and_logout_at_once(client) for _ in range(TRIALS * 2)]

        assert [survivors for _, survivors in outcomes] == [[]] * (TRIALS * 2)
        me = await client.get("/users/me", headers=bearer(other))
        assert me.status_code == 200  # the account's other sign-in carries on
