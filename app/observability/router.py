"""GET /metrics: unauthenticated, like most exporters; keep it off the public network."""

import anyio
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.core.config import SettingsDep
from app.core.errors import NotFoundError
from app.observability.metrics import render, write_live_gauges

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(settings: SettingsDep) -> Response:
    """Prometheus metrics in the text exposition format."""
    if not settings.metrics_enabled:
        raise NotFoundError("Not Found")
    write_live_gauges()  # this worker's, up to date; the others' are at most a second old
    # Several workers' samples are read from files: off the event loop.
    body = await anyio.to_thread.run_sync(render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
