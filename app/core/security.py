"""Password hashing: argon2 through passlib's CryptContext, always off the event loop."""

import secrets
from functools import lru_cache, partial

import anyio
from passlib.context import CryptContext

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

_limiter: anyio.CapacityLimiter | None = None


def configure_hash_concurrency(limit: int) -> None:
    """Cap concurrent hash computations per process: each one holds 19 MiB and a CPU core."""
    global _limiter
    _limiter = anyio.CapacityLimiter(limit)


def _get_limiter() -> anyio.CapacityLimiter:
    if _limiter is None:
        configure_hash_concurrency(1)  # the setting's default; lifespan applies the setting
    assert _limiter is not None
    return _limiter


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(password_context.hash, password, limiter=_get_limiter())


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
    verify = partial(_verify_and_update, password, hashed)
    return await anyio.to_thread.run_sync(verify, limiter=_get_limiter())


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return password_context.hash(secrets.token_urlsafe(16))


async def verify_dummy_password(password: str) -> None:
    """Spend the time a real check takes, so unknown usernames cannot be told apart by timing."""
    dummy = await anyio.to_thread.run_sync(_dummy_hash, limiter=_get_limiter())
    await verify_password(password, dummy)
