"""Request limits: fixed windows counted per caller, in this process or shared through Redis.

With Redis every process counts locally and adds its count to the shared one in batches, so most
requests cost no round trip: a process reports a key after `batch` requests (1% of the limit, at
most `MAX_BATCH`), and on every request once the key is within a batch of its limit. A process
therefore admits at most batch - 1 requests the others have not seen, and none once a report
shows the limit spent: P processes admit at most P x (batch - 1) beyond a limit. The `RateLimit`
field's remaining count is read from the process's own last report.
"""

import logging
import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from limits import parse
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

MAX_BATCH = 100
REDIS_TIMEOUT_SECONDS = 0.5
# After a failed round trip Redis is left alone this long; requests are decided meanwhile as
# RATE_LIMIT_FAIL_OPEN says.
REDIS_RETRY_SECONDS = 1.0


# One round trip: add to a window's count, and give the key its expiry when this made it.
ADD_TO_COUNT = """
local total = redis.call('INCRBY', KEYS[1], ARGV[1])
if total == tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return total
"""


class LimitStoreUnavailable(Exception):
    """Redis did not answer and the limits fail closed."""


@dataclass(frozen=True, slots=True)
class Policy:
    """A named quota: `limit` requests per `window` seconds, per key."""

    name: str
    limit: int
    window: int
    batch: int  # requests a process may admit before it reports them

    @classmethod
    def parse(cls, name: str, notation: str) -> "Policy":
        item = parse(notation)
        limit = int(item.amount)
        return cls(name, limit, int(item.get_expiry()), max(1, min(limit // 100, MAX_BATCH)))

    def header_item(self) -> str:
        """This policy as an item of the `RateLimit-Policy` field."""
        return f'"{self.name}";q={self.limit};w={self.window}'


@dataclass(slots=True)
class Usage:
    """What one request left of one policy's quota for its key."""

    policy: Policy
    remaining: int
    reset: int  # seconds until the window ends
    allowed: bool

    def header_item(self) -> str:
        """This usage as an item of the `RateLimit` field."""
        return f'"{self.policy.name}";r={self.remaining};t={self.reset}'


@dataclass(slots=True)
class Counter:
    window: int
    shared: int = 0  # the count every process had reported at the last round trip
    pending: int = 0  # admitted here, not yet reported

    @property
    def used(self) -> int:
        return self.shared + self.pending


class RequestLimiter:
    """One application's counters: in memory, or shared through Redis at `redis_url`."""

    def __init__(
        self,
        *,
        redis_url: str | None,
        key_prefix: str,
        fail_open: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock
        self.redis: Redis | None = None
        if redis_url is not None:
            self.redis = redis = Redis.from_url(
                redis_url,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                # redis-py retries with backoff by default: a dead Redis would hold requests.
                retry=Retry(NoBackoff(), 0),
            )
            self.add_to_count = redis.register_script(ADD_TO_COUNT)
        self.key_prefix = f"{key_prefix}:requests"
        self.fail_open = fail_open
        self.counters: dict[tuple[str, Hashable], Counter] = {}
        self.redis_down_until = 0.0
        self.current_window: dict[str, int] = {}

    async def hit(self, policy: Policy, key: Hashable) -> Usage:
        """Count one request of `key` against `policy`, unless its quota is spent."""
        now = self.clock()
        window = int(now // policy.window)
        reset = max(1, math.ceil((window + 1) * policy.window - now))
        counter = self._counter(policy, key, window)
        if counter.used >= policy.limit:
            return Usage(policy, 0, reset, allowed=False)
        if self.redis is None or not self._needs_report(policy, counter):
            counter.pending += 1
            return Usage(policy, policy.limit - counter.used, reset, allowed=True)
        used = await self._report(policy, key, counter, reset)
        return Usage(policy, max(0, policy.limit - used), reset, allowed=used <= policy.limit)

    def _counter(self, policy: Policy, key: Hashable, window: int) -> Counter:
        if self.current_window.get(policy.name) != window:
            # A new window: the counters of the last one are of no use any more.
            self.current_window[policy.name] = window
            self.counters = {k: c for k, c in self.counters.items() if k[0] != policy.name}
        counter = self.counters.get((policy.name, key))
        if counter is None:
            counter = self.counters[(policy.name, key)] = Counter(window)
        return counter

    def _needs_report(self, policy: Policy, counter: Counter) -> bool:
        return counter.pending + 1 >= policy.batch or policy.limit - counter.used <= policy.batch

    async def _report(self, policy: Policy, key: Hashable, counter: Counter, reset: int) -> int:
        """Add this request and the pending ones to the shared count; the count after it."""
        assert self.redis is not None
        if time.monotonic() < self.redis_down_until:
            return self._unreported(counter)
        count = counter.pending + 1
        counter.pending = 0  # requests arriving during the round trip start the next batch
        name = f"{self.key_prefix}:{policy.name}:{key}:{counter.window}"
        try:
            total = await self.add_to_count(keys=[name], args=[count, reset + 1])
        except (RedisError, OSError) as error:
            counter.pending += count - 1
            self.redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
            logger.warning("request limits: Redis unavailable (%s)", error)
            return self._unreported(counter)
        counter.shared = max(counter.shared, int(total))
        return int(total)

    def _unreported(self, counter: Counter) -> int:
        """Without Redis: this process's own count decides (fail open), or nothing does."""
        if not self.fail_open:
            raise LimitStoreUnavailable
        counter.pending += 1
        return counter.used

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
