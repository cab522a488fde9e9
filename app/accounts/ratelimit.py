"""Failed-login limits, checked before a password is verified: per username and client address,
and per username; counters in Redis when REDIS_URL is set, else in each process.
"""

import hashlib
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

import anyio
from fastapi import Depends, Request
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app.core.config import Settings, SettingsDep
from app.core.errors import ServiceUnavailableError, TooManyRequestsError, UnauthorizedError
from app.observability.metrics import RATE_LIMITED

logger = logging.getLogger(__name__)

KEY_PREFIX = "employee-api:login"
REDIS_TIMEOUT_SECONDS = 0.5
TOO_MANY_FAILURES = "Too many failed logins; retry later"
LIMITER_UNAVAILABLE = "Sign-in is unavailable; retry shortly."
UNAVAILABLE_RETRY_AFTER = 5
SIGN_INS_IN_PROGRESS = "Too many sign-ins for this account in progress; retry shortly"
# An attempt that does not fit beside those being verified waits for them, this long at most.
QUEUE_SECONDS = 10.0
QUEUE_POLL_SECONDS = 0.02
# An in-flight count outlives a worker that died mid-attempt by this many seconds at most.
IN_FLIGHT_EXPIRY = 60

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


@dataclass(frozen=True)
class Budget:
    """One failure limit for one key: its moving window of failures, and how many attempts
    against it are being verified right now."""

    item: RateLimitItem
    keys: Keys

    @property
    def in_flight_key(self) -> str:
        return f"{self.item.key_for(*self.keys)}/in-flight"


class LoginLimiter:
    """One application's failed-login counters. Only failures count; an attempt is verified only
    while the failures counted plus the attempts in flight fit the limit (the rest wait)."""

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
        """Refuse (429) before any hashing when a limit is spent; count the attempt if it fails."""
        user = username_key(username)
        client = Budget(self.per_client, ("client", address, user))
        budgets = (client, Budget(self.per_username, ("user", user)))
        counted = await self._admit(budgets)
        try:
            # Wait here, before the user lookup takes a database connection: queued logins
            # holding pooled connections while argon2 is busy would starve every other request.
            async with self.slots:
                yield
        except UnauthorizedError:
            if counted:
                for budget in budgets:
                    await self._quietly(self.limiter.hit(budget.item, *budget.keys))
                await self._release(budgets)
            raise
        except BaseException:
            if counted:
                await self._release(budgets)
            raise
        if counted:
            await self._release(budgets)
            await self._quietly(self.limiter.clear(client.item, *client.keys))

    async def _admit(self, budgets: tuple[Budget, ...]) -> bool:
        """Reserve a place in every budget (True), or refuse; False when the storage is down
        and the limits fail open."""
        # Polled, not awaited: the attempts being waited for may run in other processes.
        deadline = time.monotonic() + QUEUE_SECONDS
        try:
            while not await self._reserve(budgets):
                if time.monotonic() > deadline:
                    raise TooManyRequestsError(SIGN_INS_IN_PROGRESS, retry_after=1)
                await anyio.sleep(QUEUE_POLL_SECONDS * (1 + random.random()))  # noqa: S311
        except self.storage_errors as error:
            if not self.fail_open:
                logger.error("login limiter storage unavailable (%s): refusing sign-in", error)
                raise ServiceUnavailableError(
                    LIMITER_UNAVAILABLE, retry_after=UNAVAILABLE_RETRY_AFTER
                ) from None
            logger.warning("login limiter storage unavailable (%s): not limiting sign-in", error)
            return False
        return True

    async def _reserve(self, budgets: tuple[Budget, ...]) -> bool:
        """Count this attempt in flight in each budget, then check it fits: counting first makes
        two concurrent attempts each see the other. False (nothing held) when it does not fit."""
        held: list[Budget] = []
        for budget in budgets:
            in_flight = await self.storage.incr(budget.in_flight_key, IN_FLIGHT_EXPIRY)
            held.append(budget)
            stats = await self.limiter.get_window_stats(budget.item, *budget.keys)
            if stats.remaining <= 0:
                await self._release(held)
                await self._refuse(budget, stats.reset_time)
            if in_flight > stats.remaining:
                await self._release(held)
                return False
        return True

    async def _release(self, budgets: Iterable[Budget]) -> None:
        for budget in budgets:
            await self._quietly(self.storage.incr(budget.in_flight_key, IN_FLIGHT_EXPIRY, -1))

    async def _refuse(self, budget: Budget, reset_time: float) -> NoReturn:
        RATE_LIMITED.labels(budget.keys[0]).inc()  # "client" or "user"
        retry_after = math.ceil(reset_time - time.time())
        raise TooManyRequestsError(TOO_MANY_FAILURES, retry_after=retry_after)

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
