"""Password hashing: argon2 through passlib's CryptContext, always off the event loop."""

import asyncio
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache, partial
from typing import TypeVar

from passlib.context import CryptContext

T = TypeVar("T")

# OWASP's first argon2id profile (19 MiB, 2 passes, 1 lane). bcrypt hashes from older
# deployments still verify and are replaced by argon2 at the next successful login.
password_context = CryptContext(
    schemes=["argon2", "bcrypt"],
    deprecated=["bcrypt"],
    argon2__type="ID",
    argon2__memory_cost=19456,
    argon2__time_cost=2,
    argon2__parallelism=1,
)

_executor: ThreadPoolExecutor | None = None


def configure_hash_concurrency(limit: int) -> None:
    """Cap concurrent hash computations per process: each one holds 19 MiB and a CPU core.

    The hashes run on a pool of exactly `limit` threads of their own. Spread over a general
    pool's dozens of threads instead, each thread's malloc arena would keep its own 19 MiB
    after the hash, and a worker's memory would grow by hundreds of MB under a login storm.
    """
    global _executor
    previous, _executor = _executor, ThreadPoolExecutor(limit, thread_name_prefix="password-hash")
    if previous is not None:
        previous.shutdown(wait=False)


def _get_executor() -> ThreadPoolExecutor:
    if _executor is None:
        configure_hash_concurrency(1)  # the setting's default; lifespan applies the setting
    assert _executor is not None
    return _executor


async def _off_loop(function: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(_get_executor(), function)


async def hash_password(password: str) -> str:
    return await _off_loop(partial(password_context.hash, password))


def _verify_and_update(password: str, hashed: str) -> tuple[bool, str | None]:
    try:
        return password_context.verify_and_update(password, hashed)
    except ValueError:
        # bcrypt refuses passwords over 72 bytes instead of truncating them. Such a password
        # cannot be the one behind a legacy bcrypt hash unless truncation is allowed, and we
        # never truncate: it is a mismatch, not a server error.
        return False, None


async def verify_password(password: str, hashed: str) -> tuple[bool, str | None]:
    """Return (matches, replacement hash when the stored one uses outdated parameters)."""
    return await _off_loop(partial(_verify_and_update, password, hashed))


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return password_context.hash(secrets.token_urlsafe(16))


async def verify_dummy_password(password: str) -> None:
    """Spend the time a real check takes, so unknown usernames cannot be told apart by timing."""
    dummy = await _off_loop(_dummy_hash)
    await verify_password(password, dummy)
