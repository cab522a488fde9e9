"""Health probes: no authentication; liveness never touches the database."""

from typing import Any, Literal

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from app.core.config import SettingsDep
from app.db.replica import replica_of
from app.db.session import database
from app.health.checks import NOT_AT_HEAD, Readiness, check_readiness
from app.security.oidc import OidcVerifier

router = APIRouter(prefix="/health", tags=["health"])

RETRY_AFTER_SECONDS = 5


class Liveness(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"] = "ok"


class ReadinessChecks(BaseModel):
    database: Literal["ok", "unreachable"] = "unreachable"
    migrations: Literal["ok", "not_at_head", "unknown"] = "unknown"
    replica: Literal["ok", "degraded"] | None = Field(
        default=None,
        description="Only with a read replica (DATABASE_READ_URL). `degraded`: it is down or "
        "lags, and the primary answers its reads; the service stays ready.",
    )
    sso: Literal["ok", "degraded"] | None = Field(
        default=None,
        description="Only with single sign-on (OIDC_ISSUER). `degraded`: the identity "
        "provider's signing keys could not be fetched (lately, or yet); its tokens signed with "
        "a key in hand still work, and the service stays ready.",
    )


class ReplicaReport(BaseModel):
    """The read replica as of the worker's last check (every half second)."""

    state: Literal["ok", "lagging", "unavailable"]
    lag_seconds: float | None = None


class ReadinessReport(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"status": "ready", "checks": {"database": "ok", "migrations": "ok"}}]
        }
    )

    status: Literal["ready"] = "ready"
    checks: ReadinessChecks
    replica: ReplicaReport | None = None


class NotReadyReport(BaseModel):
    """The error shape every 503 has (`detail`), plus which check failed."""

    detail: str
    status: Literal["not_ready"] = "not_ready"
    checks: ReadinessChecks = ReadinessChecks()
    replica: ReplicaReport | None = None


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
    "/ready",
    response_model=ReadinessReport,
    response_model_exclude_none=True,
    responses=NOT_READY,
    operation_id="read_readiness",
)
async def read_readiness(request: Request, settings: SettingsDep) -> Any:
    """Ready when the database answers and its migrations are at this code's head revision.

    A read replica that is down or lags is reported (`degraded`) but does not make the
    service unready: the primary answers its reads meanwhile; nor does an identity provider
    whose keys cannot be fetched (`sso`)."""
    result = await check_readiness(
        database(request).read_sessions, within=settings.health_check_timeout
    )
    checks = ReadinessChecks.model_validate(result, from_attributes=True)
    replica = replica_report(request)
    if replica is not None:
        checks.replica = "ok" if replica.state == "ok" else "degraded"
    oidc: OidcVerifier | None = request.app.state.oidc
    if oidc is not None:
        checks.sso = oidc.state  # what the last fetch of the keys said: no request is made here
    if result.ready:
        return ReadinessReport(checks=checks, replica=replica)
    report = NotReadyReport(detail=describe(result), checks=checks, replica=replica)
    return JSONResponse(
        report.model_dump(exclude_none=True),
        status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def replica_report(request: Request) -> ReplicaReport | None:
    replica = replica_of(request)
    if replica is None:
        return None
    state = replica.monitor.state
    lag = None if state.lag_seconds is None else round(state.lag_seconds, 3)
    return ReplicaReport.model_validate({"state": state.status, "lag_seconds": lag})


def describe(result: Readiness) -> str:
    if result.migrations == NOT_AT_HEAD:
        return "The database schema is not at the head revision; run `alembic upgrade head`."
    return "The database does not answer; retry shortly."
