"""A failed login looks and takes the same whether the user is unknown, mistyped or inactive."""

import statistics
import time

import httpx
import pytest

from app.core.config import Settings
from tests.conftest import USER_PASSWORD, make_settings

TRIES = 120
MAX_MEDIAN_GAP_SECONDS = 0.010
# Headers that may differ between any two answers without saying anything about the account.
VOLATILE_HEADERS = {"date", "x-request-id"}


@pytest.fixture
def settings(database_url: str) -> Settings:
    # Hundreds of deliberate failures: the brute-force limits must not be what is measured.
    return make_settings(
        database_url, login_limit_per_client="100000/hour", login_limit_per_username="100000/hour"
    )


@pytest.fixture
def sqlite_only(backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("argon2 timing is measured once, on SQLite; the database is not what differs")


def stable_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower() not in VOLATILE_HEADERS}


class TestLoginFailuresAreIndistinguishable:
    async def test_same_answer_and_same_median_latency(self, sqlite_only, client, make_user):
        await make_user("jane.doe")
        await make_user("sleeping.user", is_active=False)
        kinds = {
            "unknown user": {"username": "nobody.here", "password": USER_PASSWORD},
            "wrong password": {"username": "jane.doe", "password": "not-the-password"},
            "inactive user": {"username": "sleeping.user", "password": USER_PASSWORD},
        }
        await client.post("/auth/token", data=kinds["unknown user"])  # builds the dummy hash
        latencies: dict[str, list[float]] = {kind: [] for kind in kinds}
        answers: dict[str, httpx.Response] = {}
        for _ in range(TRIES):
            # Round-robin, so drift (CPU frequency, other load) hits every kind alike.
            for kind, form in kinds.items():
                started = time.perf_counter()
                response = await client.post("/auth/token", data=form)
                latencies[kind].append(time.perf_counter() - started)
                answers[kind] = response
                assert response.status_code == 401

        unknown, wrong, inactive = answers.values()
        assert unknown.json() == wrong.json() == inactive.json()
        assert unknown.json() == {"detail": "Incorrect username or password"}
        assert stable_headers(unknown) == stable_headers(wrong) == stable_headers(inactive)

        medians = {kind: statistics.median(values) for kind, values in latencies.items()}
        print(
            f"\nlogin failure medians over {TRIES} tries: "
            + ", ".join(f"{kind} {median * 1000:.1f} ms" for kind, median in medians.items())
        )
        values = list(medians.values())
        gap = max(values) - min(values)
        assert gap < MAX_MEDIAN_GAP_SECONDS, f"medians differ by {gap * 1000:.1f} ms: {medians}"
