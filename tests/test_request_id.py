"""X-Request-ID: taken from the caller when sane, generated otherwise, on every answer."""

import re

import pytest

GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.mark.parametrize("value", ["abc-123", "4bf92f3577b34da6a3ce929d0e0e4736", "a.b:c_d"])
async def test_a_sane_id_is_returned_as_sent(normal_user_client, value):
    response = await normal_user_client.get("/employees/", headers={"X-Request-ID": value})
    assert response.headers["x-request-id"] == value


@pytest.mark.parametrize(
    "value", ["", "x" * 129, "with space", "new\\nline", "<script>", "naïve".encode()]
)
async def test_an_unfit_id_is_replaced(normal_user_client, value):
    response = await normal_user_client.get("/employees/", headers={"X-Request-ID": value})
    assert GENERATED.fullmatch(response.headers["x-request-id"])


async def test_each_request_gets_its_own_id(client):
    first, second = (await client.get("/employees/"), await client.get("/employees/"))
    assert first.status_code == second.status_code == 401
    assert GENERATED.fullmatch(first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_errors_outside_the_routes_carry_it_too(client):
    too_big = await client.post(
        "/auth/token", content=b"x" * 2_000_000, headers={"X-Request-ID": "big-1"}
    )
    assert too_big.status_code == 413
    assert too_big.headers["x-request-id"] == "big-1"
    missing = await client.get("/nowhere", headers={"X-Request-ID": "lost-1"})
    assert missing.status_code == 404
    assert missing.headers["x-request-id"] == "lost-1"
