"""One error hierarchy for the domain; HTTP status codes are decided here and nowhere else."""

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

logger = logging.getLogger(__name__)


class AppError(Exception):
    status_code = status.HTTP_400_BAD_REQUEST
    code = "bad_request"
    headers: ClassVar[dict[str, str] | None] = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def response_headers(self) -> dict[str, str] | None:
        return self.headers

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail}


class InvalidInputError(AppError):
    """Input that is well-formed but refused: shaped like a validation error (422)."""

    status_code = status.HTTP_422_UNPROCESSABLE_CONTENT
    code = "invalid_input"

    def __init__(self, detail: str, *, loc: tuple[str, ...]) -> None:
        super().__init__(detail)
        self.loc = loc

    def body(self) -> dict[str, Any]:
        return {"detail": [{"type": self.code, "loc": list(self.loc), "msg": self.detail}]}


class NotFoundError(AppError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class ConflictError(AppError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class PreconditionFailedError(AppError):
    """An `If-Match` names a version the record no longer has: someone changed it meanwhile."""

    status_code = status.HTTP_412_PRECONDITION_FAILED
    code = "precondition_failed"


class PreconditionRequiredError(AppError):
    status_code = status.HTTP_428_PRECONDITION_REQUIRED
    code = "precondition_required"


class UnauthorizedError(AppError):
    status_code = status.HTTP_401_UNAUTHORIZED
    code = "unauthorized"
    headers: ClassVar[dict[str, str] | None] = {"WWW-Authenticate": "Bearer"}


class ForbiddenError(AppError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "forbidden"


class RetryLaterError(AppError):
    """A refusal that ends by itself: the answer says when to try again (`Retry-After`)."""

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = max(1, retry_after)

    def response_headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after)}


class TooManyRequestsError(RetryLaterError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    code = "too_many_requests"


class ServiceUnavailableError(RetryLaterError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "service_unavailable"


async def handle_app_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, AppError)
    return JSONResponse(error.body(), error.status_code, headers=error.response_headers())


def plain_message(msg: str) -> str:
    """A validator's own words: pydantic prefixes a raised ValueError's with "Value error, ",
    which the CSV import and the CLI leave out, so every answer words a problem alike."""
    return msg.removeprefix("Value error, ")


async def handle_validation_error(_: Request, error: Exception) -> JSONResponse:
    # FastAPI's default body echoes each rejected input back; a rejected password must not be.
    assert isinstance(error, RequestValidationError)
    details = [
        {"type": item["type"], "loc": list(item["loc"]), "msg": plain_message(item["msg"])}
        for item in error.errors()
    ]
    return JSONResponse(
        {"detail": jsonable_encoder(details)}, status.HTTP_422_UNPROCESSABLE_CONTENT
    )


async def handle_database_unavailable(_: Request, error: Exception) -> JSONResponse:
    # Only connection-level failures land here (see is_unavailable); they are not the client's fault
    # and a retry may succeed, so they are 503 rather than 500.
    if isinstance(error, DBAPIError) and not is_unavailable(error):
        raise error
    logger.warning("database unavailable: %s", type(error).__name__)
    return JSONResponse(
        {"detail": "The database is unavailable; retry shortly."},
        status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "5"},
    )


# SQLSTATE classes of a server that cannot serve right now: connection exception (08),
# insufficient resources (53: too many connections), operator intervention (57P: shutting down,
# starting up, crashed). The driver reports them as plain DBAPIError, not OperationalError.
UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "53", "57P")


def is_unavailable(error: DBAPIError) -> bool:
    sqlstate = getattr(error.orig, "sqlstate", None) or ""
    return (
        error.connection_invalidated
        or isinstance(error, OperationalError)
        or sqlstate.startswith(UNAVAILABLE_SQLSTATE_PREFIXES)
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, handle_app_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(PoolTimeoutError, handle_database_unavailable)
    app.add_exception_handler(DBAPIError, handle_database_unavailable)
    app.add_exception_handler(ConnectionError, handle_database_unavailable)
    app.add_exception_handler(TimeoutError, handle_database_unavailable)
