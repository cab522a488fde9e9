"""GET /employees/{emp_id}, the busiest request, answered without solving its dependencies.

The route is declared like any other (`app.employees.router.read_employee`): its signature is
what OpenAPI documents, and FastAPI's handler for it stays the reference. Solving that signature
(a claims and a session dependency, a path and a header parameter, each validated) cost about a
fifth of the request's CPU (528 -> 416 µs in-process without it), as much as the database lookup.

`ReadEmployeeRoute` therefore answers the common request itself: an `emp_id` written as a plain
number in range, an `If-None-Match` within its declared length, no override of the dependencies
below, and no trace being recorded (OTEL_*: FastAPI's handler opens the spans). It reads the
claims with the claims dependency's own function and calls the same `answer_read` as the
declared handler, so such a request gets the same answer either way. Where the app has pooled
reads it reads without a session (`app.core.sql.PooledReads`): its one statement needs none, and
creating one cost about as much as borrowing the connection. Any other request goes to
FastAPI's handler, which refuses it with its usual 422 (or serves it, as `007` is 7): no error
is worded twice.
"""

import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response, status
from fastapi.routing import APIRoute

from app.auth.dependencies import authorize, get_claims
from app.core.db import get_session
from app.core.errors import NotFoundError
from app.core.preconditions import none_match
from app.core.sql import PooledReads, Reads
from app.core.tokens import AccessClaims
from app.core.types import INT32_MAX
from app.employees import queries
from app.employees.dependencies import IF_NONE_MATCH_MAX_LENGTH
from app.employees.models import etag

JSON = "application/json"
# A number as FastAPI would read it, without a sign, leading zero, or more digits than INT32_MAX.
_PLAIN_ID = re.compile(r"[1-9][0-9]{0,9}")
# Overridden, these must be solved by FastAPI: it is what honours overrides.
CALLED_DIRECTLY = (get_claims, get_session)
TELEMETRY_KEY = "fastapi.telemetry"  # in the scope while FastAPI traces the request

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


async def answer_read(
    request: Request,
    *,
    claims: AccessClaims,
    reads: Reads,
    emp_id: int,
    if_none_match: str | None,
) -> Response:
    """The caller's account and the record in one round trip; the record with its `ETag`."""
    account, employee = await queries.get_employee_as(
        reads=reads, emp_id=emp_id, user_id=claims.user_id
    )
    authorize(request, claims, account)
    if employee is None:
        raise NotFoundError(f"Employee {emp_id} not found")
    tag = etag(employee)
    if none_match(if_none_match, tag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": tag})
    return Response(queries.employee_json(employee), media_type=JSON, headers={"ETag": tag})


def plain_emp_id(text: str) -> int | None:
    """The id, if `text` is one FastAPI would accept as the very same number; else None."""
    if _PLAIN_ID.fullmatch(text) is None:
        return None
    value = int(text)
    return value if value <= INT32_MAX else None


async def reads_for(request: Request) -> Reads:
    """Where the direct path reads: without a session where the app has pooled reads (PostgreSQL
    with asyncpg; its lifespan sets them up), else in the request's session, as the handler."""
    reads: PooledReads | None = getattr(request.app.state, "pooled_reads", None)
    return reads if reads is not None else await get_session(request)


class ReadEmployeeRoute(APIRoute):
    """Serves a plain, valid request for one employee directly; the rest the standard way."""

    def get_route_handler(self) -> Handler:
        standard = super().get_route_handler()

        async def handler(request: Request) -> Response:
            emp_id = plain_emp_id(request.path_params.get("emp_id", ""))
            if_none_match = request.headers.get("if-none-match")
            overrides = request.app.dependency_overrides
            if (
                emp_id is None
                or (if_none_match is not None and len(if_none_match) > IF_NONE_MATCH_MAX_LENGTH)
                or any(dependency in overrides for dependency in CALLED_DIRECTLY)
                # A traced request keeps the spans FastAPI's handler opens (dependencies, endpoint).
                or request.scope.get(TELEMETRY_KEY) is not None
            ):
                return await standard(request)
            return await answer_read(
                request,
                claims=await get_claims(request),
                reads=await reads_for(request),
                emp_id=emp_id,
                if_none_match=if_none_match,
            )

        return handler
