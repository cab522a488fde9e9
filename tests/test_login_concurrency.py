"""Sign-ins at once for one account from one address: the failure limits count failures only.

Correct passwords are never refused because other sign-ins were in progress; wrong ones are
verified no more often than the limit allows, however many race (default limits: 5 a minute
per username and address).
"""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient

from app.core.config import Settings
from tests.conftest import USER_PASSWORD, make_settings
from tests.test_login_limits import REDIS_TEST_URL, WRONG, hashes, login, redis_username

__all__ = ["hashes", "redis_username"]  # fixtures, imported for this module's tests
LIMIT = 5


def statuses(responses: list[Any]) -> Counter[int]:
    return Counter(response.status_code for response in responses)


class TestOneProcess:
    @pytest.fixture
    def settings(self, database_url: str) -> Settings:
        return make_settings(database_url)  # the default limits

    async def test_sixteen_correct_sign_ins_at_once_all_succeed(self, client, normal_user):
        responses = await asyncio.gather(
            *(login(client, "jane.doe", USER_PASSWORD) for _ in range(16))
        )

        assert statuses(responses) == {200: 16}

    async def test_twenty_wrong_guesses_at_once_verify_only_the_limit(
        self, client, normal_user, hashes
    ):
        responses = await asyncio.gather(*(login(client, "jane.doe") for _ in range(20)))

        assert statuses(responses) == {401: LIMIT, 429: 20 - LIMIT}
        assert hashes == [WRONG] * LIMIT
        assert (await login(client, "jane.doe", USER_PASSWORD)).status_code == 429

    async def test_correct_sign_ins_after_failures_fit_in_what_is_left(self, client, normal_user):
        for _ in range(LIMIT - 1):
            assert (await login(client, "jane.doe")).status_code == 401

        responses = await asyncio.gather(
            *(login(client, "jane.doe", USER_PASSWORD) for _ in range(8))
        )

        assert statuses(responses) == {200: 8}


class TestTwoProcessesSharingRedis:
    @pytest.fixture
    def settings(self, database_url: str) -> Settings:
        return make_settings(database_url, redis_url=REDIS_TEST_URL)

    @pytest.fixture
    async def second(self, app_with) -> AsyncIterator[AsyncClient]:
        """Another worker: its own limiter, the same Redis."""
        other = await app_with()
        async with AsyncClient(transport=ASGITransport(app=other), base_url="http://t") as client:
            yield client

    async def test_racing_guesses_through_both_verify_only_the_limit(
        self, client, second, make_user, redis_username, hashes
    ):
        await make_user(redis_username)
        responses = await asyncio.gather(
            *(login((client, second)[n % 2], redis_username) for n in range(20))
        )

        assert statuses(responses) == {401: LIMIT, 429: 20 - LIMIT}
        assert len(hashes) == LIMIT

    async def test_racing_correct_sign_ins_through_both_all_succeed(
        self, client, second, make_user, redis_username
    ):
        await make_user(redis_username)
        responses = await asyncio.gather(
            *(login((client, second)[n % 2], redis_username, USER_PASSWORD) for n in range(16))
        )

        assert statuses(responses) == {200: 16}
