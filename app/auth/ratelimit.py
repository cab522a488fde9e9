"""Failed-login limits, checked before a password is verified so that guessing stops early.

Two moving windows: one per (username, client address), one per username across all addresses.
Counters live in Redis when REDIS_URL is set (shared by every worker and replica) and in this
process's memory otherwise. The limiter is built lazily per application, never at import.
"""

import hashlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import Depends, Request
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app.auth.dependencies import SettingsDep
from app.core.config import Settings
from app.core.errors import ServiceUnavailableError, TooManyRequestsError, UnauthorizedError
from app.observability.metrics import RATE_LIMITED

logger = logging.getLogger(__name__)

KEY_PREFIX = "employee-api:login"
REDIS_TIMEOUT_SECONDS = 0.5
TOO_MANY_FAILURES = "Too many failed logins; retry later"
LIMITER_UNAVAILABLE = "Sign-in is unavailable; retry shortly."
UNAVAILABLE_RETRY_AFTER = 5

Keys = tuple[str, ...]


def build_storage(redis_url: str | None, key_prefix: str = KEY_PREFIX) -> Storage:
    if redis_url is None:
        return MemoryStorage()
    options: dict[str, Any] = {
        "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
        "socket_timeout": REDIS_TIMEOUT_SECONDS,
        # redis-py retries 10 times with backoff by default: a dead Redis would hold every login.
        "retry": Retry(NoBackoff(), 0),
    }
    uri = redis_url.replace("unix://", "redis+unix://", 1)
    return RedisStorage(
        f"async+{uri}",
        implementation="redispy",
        key_prefix=key_prefix,
        wrap_exceptions=True,
        **options,
    )


def username_key(username: str) -> str:
    # Usernames match ignoring case; hashed so Redis never holds them and "/" cannot forge a key.
    return hashlib.sha256(username.lower().encode()).hexdigest()[:32]


class LoginLimiter:
    """One application's failed-login counters (kept on `app.state`, so each app starts clean)."""

    def __init__(self, settings: Settings, storage: Storage | None = None) -> None:
        self.per_client: RateLimitItem = parse(settings.login_limit_per_client)
        self.per_username: RateLimitItem = parse(settings.login_limit_per_username)
        self.fail_open = settings.rate_limit_fail_open
        self.slots = anyio.Semaphore(settings.password_hash_concurrency)
        self.storage = storage if storage is not None else build_storage(settings.redis_url)
        self.limiter = MovingWindowRateLimiter(self.storage)
        base = self.storage.base_exceptions
        self.storage_errors: tuple[type[BaseException], ...] = (
            StorageError,
            OSError,
            *(base if isinstance(base, tuple) else (base,)),
        )

    @asynccontextmanager
    async def attempt(self, username: str, address: str) -> AsyncIterator[None]:
        """Refuse (429) before any hashing when a limit is spent; count the attempt if it fails.

        The per-client entry is taken before verifying, atomically, so concurrent guesses cannot
        all slip past the check; a successful login clears it, so successes never count.
        """
        user = username_key(username)
        client_keys, user_keys = ("client", address, user), ("user", user)
        counted = await self._admit(client_keys, user_keys)
        try:
            # Wait here, before the user lookup takes a database connection: queued logins
            # holding pooled connections while argon2 is busy would starve every other request.
            async with self.slots:
                yield
        except UnauthorizedError:
            if counted:
                await self._quietly(self.limiter.hit(self.per_username, *user_keys))
            raise
        if counted:
            await self._quietly(self.limiter.clear(self.per_client, *client_keys))

    async def _admit(self, client_keys: Keys, user_keys: Keys) -> bool:
        try:
            if not await self.limiter.test(self.per_username, *user_keys):
                await self._refuse(self.per_username, user_keys)
            if not await self.limiter.hit(self.per_client, *client_keys):
                await self._refuse(self.per_client, client_keys)
        except self.storage_errors as error:
            if not self.fail_open:
                logger.error("login limiter storage unavailable (%s): refusing sign-in", error)
                raise ServiceUnavailableError(
                    LIMITER_UNAVAILABLE, retry_after=UNAVAILABLE_RETRY_AFTER
                ) from None
            logger.warning("login limiter storage unavailable (%s): not limiting sign-in", error)
            return False
        return True

    async def _refuse(self, item: RateLimitItem, keys: Keys) -> None:
        RATE_LIMITED.labels(keys[0]).inc()  # "client" or "user"
        stats = await self.limiter.get_window_stats(item, *keys)
        raise TooManyRequestsError(
            TOO_MANY_FAILURES, retry_after=math.ceil(stats.reset_time - time.time())
        )

    async def _quietly(self, operation: Awaitable[object]) -> None:
        try:
            await operation
        except self.storage_errors as error:
            logger.warning("login limiter storage unavailable (%s): attempt not recorded", error)


@dataclass(frozen=True)
class LoginGuard:
    """The application's limiter bound to the caller's address."""

    limiter: LoginLimiter
    address: str

    def __call__(self, username: str) -> AbstractAsyncContextManager[None]:
        return self.limiter.attempt(username, self.address)


async def get_login_guard(request: Request, settings: SettingsDep) -> LoginGuard:
    limiter = getattr(request.app.state, "login_limiter", None)
    if limiter is None:
        limiter = request.app.state.login_limiter = LoginLimiter(settings)
    # The peer address; behind a proxy uvicorn's --proxy-headers (with --forwarded-allow-ips)
    # rewrites it from X-Forwarded-For. Never read that header here: any client can forge it.
    address = request.client.host if request.client else "unknown"
    return LoginGuard(limiter, address)


LoginGuardDep = Annotated[LoginGuard, Depends(get_login_guard)]
