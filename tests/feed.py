"""Reading the change feed in tests.

On PostgreSQL a committed event is served once every transaction that started before it has
ended, in any database of the server (the other test processes' too): milliseconds here, but not
at once. A test that expects events waits until they are all served (`settled`); once served,
an event stays in place, so what follows may read the feed directly.
"""

import asyncio
from typing import Any

from httpx import AsyncClient

FEED = "/employees/changes"


async def events_after(
    client: AsyncClient, after: str | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"limit": limit} | ({"after": after} if after else {})
    response = await client.get(FEED, params=params)
    assert response.status_code == 200, response.text
    return list(response.json())


async def settled(
    client: AsyncClient, count: int, after: str | None = None
) -> list[dict[str, Any]]:
    """The events after `after` once at least `count` are served (at most 10 s)."""
    events: list[dict[str, Any]] = []
    for _ in range(500):
        events = await events_after(client, after)
        if len(events) >= count:
            return events
        await asyncio.sleep(0.02)
    return events
