"""Prometheus metrics at GET /metrics; with several workers each writes its samples under
PROMETHEUS_MULTIPROC_DIR and any worker's scrape adds them all up.
"""

import asyncio
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Requests that matched no route share one label: raw paths would let any caller create series.
UNMATCHED_ROUTE = "<unmatched>"
SAMPLE_FILE_PREFIXES = ("counter_", "gauge_", "histogram_", "summary_")

REQUESTS = Counter("http_requests_total", "HTTP requests answered.", ["method", "route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time from the request's arrival to the end of its answer.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
IN_FLIGHT = Gauge(
    "http_requests_in_progress", "HTTP requests being answered.", multiprocess_mode="livesum"
)
POOL_CHECKED_OUT = Gauge(
    "db_pool_checked_out_connections",
    "Database connections lent out by the pool right now.",
    multiprocess_mode="livesum",
)
LOGIN_FAILURES = Counter("login_failures_total", "Sign-ins refused for bad credentials (401).")
REQUESTS_LIMITED = Counter(
    "requests_rate_limited_total",
    "Requests refused by the request limits (429), by the policy that was spent.",
    ["policy"],
)
RATE_LIMITED = Counter(
    "login_rate_limited_total",
    "Sign-ins refused by the failed-login limits (429), by the window that was spent.",
    ["window"],
)
REPLICA_FALLBACKS = Counter(
    "db_replica_fallbacks_total",
    "Reads sent to the primary instead of the read replica (DATABASE_READ_URL), by reason.",
    ["reason"],
)

_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
_fallback_children: dict[str, Any] = {}


class LiveCounts:
    """This worker's numbers behind the two live gauges, as plain integers: a multiprocess
    gauge costs a lock, a system call and a file write per change. The gauges are written from
    these when scraped, and by every worker once a second (`keep_live_gauges`)."""

    in_flight = 0
    pool_checked_out = 0


LIVE = LiveCounts()
LIVE_GAUGE_INTERVAL_SECONDS = 1.0


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    key = (method, route, status)
    children = _children.get(key)
    if children is None:
        # Resolving labels takes a lock and a lookup; the children are cached per label set.
        labels = (method, route, str(status))
        children = _children[key] = (REQUESTS.labels(*labels), LATENCY.labels(*labels))
    children[0].inc()
    children[1].observe(seconds)


def count_replica_fallback(reason: str) -> None:
    child = _fallback_children.get(reason)
    if child is None:
        child = _fallback_children[reason] = REPLICA_FALLBACKS.labels(reason)
    child.inc()


def track_pool(engine: AsyncEngine) -> None:
    """Count the engine's checked-out connections into `LIVE` (POOL_CHECKED_OUT)."""
    pool_events = engine.sync_engine.pool
    event.listen(pool_events, "checkout", _checked_out)
    event.listen(pool_events, "checkin", _checked_in)


def _checked_out(*_: Any) -> None:
    LIVE.pool_checked_out += 1


def _checked_in(*_: Any) -> None:
    LIVE.pool_checked_out -= 1


def write_live_gauges() -> None:
    IN_FLIGHT.set(LIVE.in_flight)
    POOL_CHECKED_OUT.set(LIVE.pool_checked_out)


async def keep_live_gauges(interval: float = LIVE_GAUGE_INTERVAL_SECONDS) -> None:
    """Write this worker's live gauges every `interval` seconds, until cancelled."""
    while True:
        write_live_gauges()
        await asyncio.sleep(interval)


def several_workers() -> bool:
    """Whether the samples are shared through PROMETHEUS_MULTIPROC_DIR (several workers)."""
    return bool(os.environ.get(MULTIPROC_ENV))


def mark_worker_stopped() -> None:
    # A stopped worker's in-flight and pool gauges must not stay in the sums.
    if several_workers():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def render() -> bytes:
    if several_workers():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


@contextmanager
def multiprocess_directory(workers: int) -> Iterator[None]:
    """A shared PROMETHEUS_MULTIPROC_DIR while the server runs: the operator's, cleared of a
    previous run's files, or a temporary one when several workers need it."""
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        for stale in Path(configured).glob("*.db"):
            if stale.name.startswith(SAMPLE_FILE_PREFIXES):
                stale.unlink(missing_ok=True)
        yield
        return
    if workers == 1:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="prometheus-") as path:
        os.environ[MULTIPROC_ENV] = path
        try:
            yield
        finally:
            os.environ.pop(MULTIPROC_ENV, None)
