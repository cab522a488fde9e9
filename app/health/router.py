"""Health probes: no authentication; liveness never touches the database."""

from typing import Any, Literal

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from app.core.config import SettingsDep
from app.db.session import database
from app.health.checks import NOT_AT_HEAD, Readiness, check_readiness

router = APIRouter(prefix="/health", tags=["health"])

RETRY_AFTER_SECONDS = 5


class Liveness(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"] = "ok"


class ReadinessChecks(BaseModel):
    database: Literal["ok", "unreachable"] = "unreachable"
    migrations: Literal["ok", "not_at_head", "unknown"] = "unknown"


class ReadinessReport(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"status": "ready", "checks": {"database": "ok", "migrations": "ok"}}]
        }
    )

    status: Literal["ready"] = "ready"
    checks: ReadinessChecks


class NotReadyReport(BaseModel):
    """The error shape every 503 has (`detail`), plus which check failed."""

    detail: str
    status: Literal["not_ready"] = "not_ready"
    checks: ReadinessChecks = ReadinessChecks()


NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {
        "model": NotReadyReport,
        "description": "The database does not answer, or its migrations are not at the head "
        "revision (run `alembic upgrade head`); retry after the `Retry-After` seconds.",
    }
}


@router.get("/live", response_model=Liveness, operation_id="read_liveness")
async def read_liveness() -> Liveness:
    """The process is up and serving; the database is not consulted."""
    return Liveness()


@router.get(
    "/ready", response_model=ReadinessReport, responses=NOT_READY, operation_id="read_readiness"
)
async def read_readiness(request: Request, settings: SettingsDep) -> Any:
    """Ready when the database answers and its migrations are at this code's head revision."""
    result = await check_readiness(
        database(request).read_sessions, within=settings.health_check_timeout
    )
    checks = ReadinessChecks.model_validate(result, from_attributes=True)
    if result.ready:
        return ReadinessReport(checks=checks)
    report = NotReadyReport(detail=describe(result), checks=checks)
    return JSONResponse(
        report.model_dump(),
        status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def describe(result: Readiness) -> str:
    if result.migrations == NOT_AT_HEAD:
        return "The database schema is not at the head revision; run `alembic upgrade head`."
    return "The database does not answer; retry shortly."
