"""Work a request leaves for after its answer is out (`app.middleware.sessions.SessionCloser`
runs it): the client does not wait for it, and its failure cannot change the answer."""

import logging
from collections.abc import Awaitable, Callable

from starlette.types import Scope

logger = logging.getLogger(__name__)

DEFERRED = "app.deferred"  # ASGI scope key: the request's deferred jobs, in order

Job = Callable[[], Awaitable[None]]


def defer(scope: Scope, job: Job) -> None:
    scope.setdefault(DEFERRED, []).append(job)


async def run_deferred(scope: Scope) -> None:
    """Each job in turn; one that fails is logged and the next still runs."""
    jobs: list[Job] = scope.get(DEFERRED, [])
    while jobs:
        job = jobs.pop(0)
        try:
            await job()
        except Exception:
            logger.warning("a deferred job failed", exc_info=True)
