"""The webhook worker: a background task of each server process that fans new changes out into
deliveries and sends the due ones. Every process runs one; the outbox's row claims let them
share the work, so any number of workers and replicas may run."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import timedelta

import httpx

from app.core.config import Settings
from app.core.types import utc_now
from app.db.engine import Database
from app.webhooks import outbox
from app.webhooks.delivery import attempt, new_client, retry_delay

logger = logging.getLogger(__name__)

OnChange = Callable[[Callable[[], None]], None]

FAN_OUT_BATCH = 500
CLAIM_BATCH = 20
# A claim outlives the slowest attempt (DNS and the request each get the timeout) by a margin;
# past it, another worker may send the delivery again.
LEASE_MARGIN = timedelta(seconds=30)
# Settled deliveries past WEBHOOK_DELIVERY_RETENTION_DAYS are deleted about this often.
PURGE_INTERVAL_SECONDS = 600
HINT_RETRY_SECONDS = 0.025


class WebhookWorker:
    def __init__(self, settings: Settings, database: Database, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.database = database
        self.client = client
        self.wake = (
            asyncio.Event()
        )  # set when a change commits (a notification on the change feed's channel)
        self.lease = timedelta(seconds=2 * settings.webhook_timeout_seconds) + LEASE_MARGIN

    async def fan_out(self) -> int:
        """Queue the deliveries of every change not yet fanned out; how many events were read."""
        total = 0
        while True:
            async with self.database.sessions() as session:
                read = await outbox.fan_out(session=session, batch=FAN_OUT_BATCH)
            total += read
            if read < FAN_OUT_BATCH:
                return total

    async def send_due(self) -> int:
        """Claim due deliveries, send them at once (at most one per employee and endpoint),
        then record each outcome; how many were sent."""
        async with self.database.sessions() as session:
            claimed = await outbox.claim_due(
                session=session, now=utc_now(), lease=self.lease, limit=CLAIM_BATCH
            )
        outcomes = await asyncio.gather(
            *(attempt(self.client, delivery, self.settings) for delivery in claimed)
        )
        for delivery, outcome in zip(claimed, outcomes, strict=True):
            await self.record(delivery, outcome)
        return len(claimed)

    async def record(self, claimed: outbox.Claimed, outcome: outbox.Outcome) -> None:
        settings = self.settings
        retry_at = None
        if not outcome.ok and claimed.attempt < settings.webhook_max_attempts:
            retry_at = utc_now() + retry_delay(claimed.attempt, settings.webhook_retry_base_seconds)
        async with self.database.sessions() as session:
            deactivated = await outbox.record_attempt(
                session=session,
                claimed=claimed,
                outcome=outcome,
                now=utc_now(),
                retry_at=retry_at,
                disable_after=timedelta(hours=settings.webhook_disable_after_hours),
            )
        if not outcome.ok:
            logger.info(
                "webhook delivery %s attempt %s failed: %s",
                claimed.id,
                claimed.attempt,
                outcome.error,
            )
        if deactivated:
            logger.warning(
                "webhook endpoint %s deactivated: its deliveries have failed for %s hours",
                claimed.endpoint_id,
                settings.webhook_disable_after_hours,
            )

    async def purge(self) -> int:
        """Delete settled deliveries past the retention period; how many."""
        days = self.settings.webhook_delivery_retention_days
        async with self.database.sessions() as session:
            return await outbox.delete_settled(
                session=session, before=utc_now() - timedelta(days=days)
            )

    async def run_once(self) -> int:
        """One round: fan out, then send until nothing is due; how much was done."""
        done = await self.fan_out()
        while sent := await self.send_due():
            done += sent
        return done

    async def run(self) -> None:
        purged_at = 0.0
        hinted = 0  # quick rounds after a notification whose change the feed does not serve yet
        failing = False
        while True:
            self.wake.clear()  # before the round: a change committed during it wakes the next
            done = 0
            try:
                done = await self.run_once()
                if time.monotonic() - purged_at > PURGE_INTERVAL_SECONDS:
                    purged_at = time.monotonic()
                    await self.purge()
                failing = False
            except Exception:
                # The database may be down or restarting: try again at the next poll, and say
                # so once, not every round.
                if not failing:
                    logger.exception("webhook worker round failed; retrying every poll")
                failing = True
            pause = self.settings.webhook_poll_seconds
            if hinted and not done:
                # The feed serves a change once every older transaction has ended: look again
                # soon, then less and less often, back to the poll.
                pause = min(pause, HINT_RETRY_SECONDS * 2**hinted)
            if done or pause >= self.settings.webhook_poll_seconds:
                hinted = 0
            hinted = 1 if await self.sleep(pause) else hinted + bool(hinted)

    async def sleep(self, seconds: float) -> bool:
        """Wait that long, or until a change commits; whether one did."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.wake.wait()
                return True
        return False


def start_webhook_worker(
    settings: Settings, database: Database, on_change: OnChange
) -> asyncio.Task[None] | None:
    """The worker's task, when WEBHOOK_WORKER_ENABLED (cancel it at shutdown). `on_change`
    subscribes it to the worker process's change notifications (app.changes.streams: one
    listening connection per process, shared with the live streams)."""
    if not settings.webhook_worker_enabled:
        return None
    return asyncio.create_task(_run(settings, database, on_change))


async def _run(settings: Settings, database: Database, on_change: OnChange) -> None:
    async with new_client() as client:
        worker = WebhookWorker(settings, database, client)
        on_change(worker.wake.set)
        await worker.run()
