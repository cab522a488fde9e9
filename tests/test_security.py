"""Password hashing: argon2id at OWASP cost, nothing truncated, never on the event loop."""

import asyncio
import threading

import pytest

from app.security import passwords as security
from app.security.passwords import common_passwords, password_problem


async def test_hashes_are_argon2id_at_owasp_cost():
    hashed = await security.hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert (await security.verify_password("correct horse battery", hashed))[0]


async def test_long_passwords_are_not_truncated():
    password = "p" * 72 + "Q"  # 73 bytes: bcrypt would have ignored the last one
    hashed = await security.hash_password(password)
    assert (await security.verify_password(password, hashed))[0]
    assert not (await security.verify_password(password[:72], hashed))[0]


async def test_hashing_runs_off_the_event_loop(monkeypatch):
    loop_thread = threading.get_ident()
    seen: list[int] = []
    original = security.password_context.hash

    def spy(secret: str) -> str:
        seen.append(threading.get_ident())
        return original(secret)

    monkeypatch.setattr(security.password_context, "hash", spy)
    await security.hash_password("correct horse battery")
    assert seen and seen[0] != loop_thread


async def test_concurrent_hashes_are_capped(monkeypatch):
    security.configure_hash_concurrency(2)
    running = 0
    peak = 0
    lock = threading.Lock()
    original = security.password_context.hash

    def counting(secret: str) -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            return original(secret)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(security.password_context, "hash", counting)
    await asyncio.gather(*(security.hash_password(f"password-{i}") for i in range(6)))
    assert 1 <= peak <= 2  # on a general thread pool all six would run at once


async def test_hashes_stay_on_as_many_threads_as_the_cap(monkeypatch):
    # Each thread that ever ran argon2 keeps a 19 MiB malloc arena: spread over a general pool's
    # dozens of threads, a login storm grew a worker past 350 MB (measured by the benchmark).
    security.configure_hash_concurrency(2)
    threads: set[str] = set()
    original = security.password_context.hash

    def spy(secret: str) -> str:
        threads.add(threading.current_thread().name)
        return original(secret)

    monkeypatch.setattr(security.password_context, "hash", spy)
    for _ in range(3):
        await asyncio.gather(*(security.hash_password(f"password-{i}") for i in range(8)))
    assert 1 <= len(threads) <= 2
    assert all(name.startswith("password-hash") for name in threads)


class TestPasswordPolicy:
    @pytest.mark.parametrize("password", ["password123", "PASSWORD123", "Qwertyuiop", "iloveyou"])
    async def test_common_passwords_are_refused(self, client, password):
        response = await client.post(
            "/auth/register", json={"username": "new.user", "password": password}
        )
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "password"]
        assert "common" in response.json()["detail"][0]["msg"]

    @pytest.mark.parametrize("password", ["new.user.name", "NEW.USER.NAME"])
    async def test_password_equal_to_username_is_refused(self, client, password):
        response = await client.post(
            "/auth/register", json={"username": "new.user.name", "password": password}
        )
        assert response.status_code == 422
        assert "same as the username" in response.json()["detail"][0]["msg"]

    def test_shipped_list_is_loaded_and_lowercase(self):
        words = common_passwords()
        assert len(words) >= 100
        assert all(word == word.lower() and len(word) >= 8 for word in words)
        assert password_problem("a-long-unusual-passphrase") is None
