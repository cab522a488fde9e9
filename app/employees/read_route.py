"""GET /employees/{emp_id}, the busiest request, answered without FastAPI solving its dependencies.

The route is declared like any other (`router.read_employee`: OpenAPI documents it, and FastAPI's
handler stays the reference). `ReadEmployeeRoute` answers a plain valid request itself, calling
the same dependency functions and `answer_read`; anything else goes to FastAPI's handler.
tests/test_read_route.py fails when the declared handler gains a parameter this path ignores.
"""

import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response, status
from fastapi.routing import APIRoute

from app.accounts.dependencies import get_claims
from app.core.config import DobVisibleTo, request_settings
from app.core.types import INT32_MAX
from app.db.reader import Reader
from app.db.replica import Replica, replica_of
from app.db.session import get_reader
from app.employees import privacy, service
from app.employees.models import employee_json, etag
from app.http.preconditions import IF_NONE_MATCH_MAX_LENGTH, none_match
from app.security.api_keys import Credential

JSON = "application/json"
# A number as FastAPI would read it, without a sign, leading zero, or more digits than INT32_MAX.
_PLAIN_ID = re.compile(r"[1-9][0-9]{0,9}")
# Overridden, these must be solved by FastAPI: it is what honours overrides.
CALLED_DIRECTLY = (get_claims, get_reader)
TELEMETRY_KEY = "fastapi.telemetry"  # in the scope while FastAPI traces the request

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


async def answer_read(
    reader: Reader,
    *,
    replica: Replica | None,
    claims: Credential,
    emp_id: int,
    if_none_match: str | None,
    dob_visible_to: DobVisibleTo,
) -> Response:
    """The record with its `ETag`, or 304 when `If-None-Match` names it; without the fields
    the caller's role may not see, under a tag of their own."""
    principal, employee = await service.read_employee(
        reader=reader, claims=claims, emp_id=emp_id, replica=replica
    )
    hidden = privacy.hidden_fields(principal.role, dob_visible_to)
    tag = etag(employee, privacy.REDACTED_TAG_SUFFIX if hidden else "")
    if none_match(if_none_match, tag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": tag})
    return Response(employee_json(employee, hidden), media_type=JSON, headers={"ETag": tag})


def plain_emp_id(text: str) -> int | None:
    """The id, if `text` is one FastAPI would accept as the very same number; else None."""
    if _PLAIN_ID.fullmatch(text) is None:
        return None
    value = int(text)
    return value if value <= INT32_MAX else None


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
                await get_reader(request),
                replica=replica_of(request),
                claims=await get_claims(request),
                emp_id=emp_id,
                if_none_match=if_none_match,
                dob_visible_to=request_settings(request).employee_dob_visible_to,
            )

        return handler
