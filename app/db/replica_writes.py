"""Each account's last write, as a position in the primary's WAL (an LSN): until the replica has
replayed that far, the account's reads go to the primary. Kept in Redis with REDIS_URL, so every
worker and API replica sees every write; else in this process's memory, which is enough for one
worker only.
"""

import logging
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# As the request limits' client: a Redis that does not answer must not hold requests.
REDIS_TIMEOUT_SECONDS = 0.5
REDIS_RETRY_SECONDS = 1.0
# Stored as 16 hexadecimal digits, so that Redis compares positions as strings.
SET_IF_LATER = """
local current = redis.call('GET', KEYS[1])
if not current or current < ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
return 1
"""


class WriteLogUnavailable(Exception):
    """Redis did not answer: another worker's writes cannot be known."""


class WriteLog(Protocol):
    async def record(self, user_id: uuid.UUID, lsn: int) -> None: ...

    async def pending(self, user_id: uuid.UUID, replayed: int) -> bool:
        """Whether the account wrote past `replayed`, the replica's replay position."""
        ...

    def forget_replayed(self, replayed: int) -> None: ...

    async def aclose(self) -> None: ...


class MemoryWriteLog:
    """This process's writes; an entry goes once the replica has replayed it, or after
    `keep_seconds` (by then the replica has replayed it, or lags past its limit)."""

    def __init__(self, keep_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.keep_seconds = keep_seconds
        self.clock = clock
        self.writes: dict[uuid.UUID, tuple[int, float]] = {}

    async def record(self, user_id: uuid.UUID, lsn: int) -> None:
        self.remember(user_id, lsn)

    def remember(self, user_id: uuid.UUID, lsn: int) -> None:
        earlier = self.writes.get(user_id)
        if earlier is not None:
            lsn = max(lsn, earlier[0])
        self.writes[user_id] = (lsn, self.clock() + self.keep_seconds)

    async def pending(self, user_id: uuid.UUID, replayed: int) -> bool:
        written = self.recalled(user_id)
        return written is not None and written > replayed

    def recalled(self, user_id: uuid.UUID) -> int | None:
        entry = self.writes.get(user_id)
        if entry is None:
            return None
        if entry[1] < self.clock():
            del self.writes[user_id]
            return None
        return entry[0]

    def forget_replayed(self, replayed: int) -> None:
        now = self.clock()
        self.writes = {
            user: entry
            for user, entry in self.writes.items()
            if entry[0] > replayed and entry[1] >= now
        }

    async def aclose(self) -> None:
        return None


class RedisWriteLog:
    """Every worker's writes, one key per account that wrote lately (expiring after
    `keep_seconds`). This worker's own are also remembered locally: a write of its own the
    replica lacks needs no round trip, and is known while Redis is unreachable."""

    def __init__(self, redis_url: str, *, key_prefix: str, keep_seconds: float) -> None:
        self.redis = Redis.from_url(
            redis_url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),
        )
        self.set_if_later = self.redis.register_script(SET_IF_LATER)
        self.key_prefix = f"{key_prefix}:replica:written"
        self.keep_seconds = max(1, round(keep_seconds))
        self.local = MemoryWriteLog(keep_seconds)
        self.redis_down_until = 0.0

    def _key(self, user_id: uuid.UUID) -> str:
        return f"{self.key_prefix}:{user_id.hex}"

    async def record(self, user_id: uuid.UUID, lsn: int) -> None:
        self.local.remember(user_id, lsn)
        if time.monotonic() < self.redis_down_until:
            return
        try:
            await self.set_if_later(
                keys=[self._key(user_id)], args=[f"{lsn:016x}", self.keep_seconds]
            )
        except (RedisError, OSError) as error:
            self._down(error)

    async def pending(self, user_id: uuid.UUID, replayed: int) -> bool:
        if await self.local.pending(user_id, replayed):
            return True
        if time.monotonic() < self.redis_down_until:
            raise WriteLogUnavailable
        try:
            stored = await self.redis.get(self._key(user_id))
        except (RedisError, OSError) as error:
            self._down(error)
            raise WriteLogUnavailable from error
        return stored is not None and int(stored, 16) > replayed

    def _down(self, error: Exception) -> None:
        self.redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
        logger.warning("read replica: Redis unavailable, reads go to the primary (%s)", error)

    def forget_replayed(self, replayed: int) -> None:
        self.local.forget_replayed(replayed)

    async def aclose(self) -> None:
        await self.redis.aclose()
