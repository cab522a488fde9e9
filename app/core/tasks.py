"""Background tasks of a worker: stopping them at shutdown."""

import asyncio
import contextlib


async def stop_tasks(*tasks: asyncio.Task[None] | None) -> None:
    """Cancel each task still running (None: never started) and wait until it has ended."""
    for task in tasks:
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
