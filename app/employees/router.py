"""Employee record endpoints: reads for any signed-in user, writes for admins.

Every record carries an `ETag` (its id and version): `If-None-Match` makes a read conditional
(304), `If-Match` makes a write conditional (412 when the record changed meanwhile).
"""

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse

from app.audit.dependencies import AdminActor, AdminCaller
from app.auth.dependencies import ClaimsDep, CurrentPrincipal, SettingsDep
from app.core.db import SessionDep
from app.core.openapi import PAGE_HEADERS, error_responses, headers
from app.core.pagination import (
    MAX_CURSOR_LENGTH,
    InvalidCursorError,
    PageDep,
    set_keyset_headers,
)
from app.core.types import SearchTerm
from app.employees import counting, crud, paging, queries, service
from app.employees.dependencies import EMPLOYEE_PATH, EmpIdPath, IfMatchDep, IfNoneMatchHeader
from app.employees.models import (
    EmployeeCreate,
    EmployeeRead,
    EmployeeUpdate,
    SortField,
    SortOrder,
    etag,
)
from app.employees.read_route import ReadEmployeeRoute, answer_read

router = APIRouter(prefix="/employees", tags=["employees"])

CityFilter = Annotated[
    SearchTerm | None, Query(description="Case-insensitive substring of the city.")
]
CountryFilter = Annotated[
    SearchTerm | None,
    Query(description="Case-insensitive substring of the country."),
]
CursorQuery = Annotated[
    str | None,
    Query(
        max_length=MAX_CURSOR_LENGTH,
        description="Where the page starts: copy it from the `next` link; not with `offset`.",
    ),
]
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description=(
            "Any unique string (a UUID, say). A retry with the same key and body gets the "
            "original answer without a second insert; the same key with another body is a 422."
        ),
    ),
]
ETAG_HEADER = headers("ETag")
CREATE_ERRORS = error_responses(401, 403, 409, 422)
CREATE_ERRORS[409] = CREATE_ERRORS[409] | {
    "description": "The `emp_id` is taken; or, with `Retry-After`, the `Idempotency-Key`'s "
    "first request is still being processed.",
    "headers": headers("Retry-After"),
}
JSON = "application/json"
WRITE_ERRORS = error_responses(401, 403, 404, 409, 412, 422, 428)


@router.get(
    "/",
    response_model=list[EmployeeRead],
    responses={
        200: {"headers": headers(*PAGE_HEADERS, "X-Total-Count-Estimated")},
        **error_responses(401, 422),
    },
    operation_id="list_employees",
)
@router.get("", response_model=list[EmployeeRead], include_in_schema=False)
async def list_employees(
    _: CurrentPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    page: PageDep,
    request: Request,
    city: CityFilter = None,
    country: CountryFilter = None,
    sort_by: SortField = SortField.emp_id,
    order: SortOrder = SortOrder.asc,
    cursor: CursorQuery = None,
) -> Response:
    """List employees, filtered and sorted; `X-Total-Count` and `Link` describe the pages.

    Follow `Link: rel="next"` (a keyset cursor) to walk the list: every page costs the same.

    `X-Total-Count` is exact on the last page of an offset walk (its offset plus its rows) and
    whenever at most `EXACT_COUNT_LIMIT` rows match. Above that, on PostgreSQL, it is the query
    planner's estimate, and the response adds `X-Total-Count-Estimated: true`.
    """
    after = None
    if cursor is not None:
        if page.offset:
            raise InvalidCursorError("cannot be combined with offset")
        after = paging.parse_cursor(cursor, sort_by, order)
    rows, more = await queries.list_employees(
        session=session,
        limit=page.limit,
        offset=page.offset,
        after=after,
        city=city,
        country=country,
        sort_by=sort_by,
        order=order,
    )
    total, exact = await counting.list_total(
        session=session,
        served=len(rows),
        more=more,
        offset=None if cursor is not None else page.offset,
        city=city,
        country=country,
        exact_up_to=settings.exact_count_limit,
        estimates=getattr(request.app.state, "count_estimates", None),
    )
    response = Response(queries.employees_json(rows), media_type=JSON)
    next_cursor = paging.cursor_after(rows[-1], sort_by, order) if more else None
    set_keyset_headers(
        request,
        response,
        page,
        total,
        exact=exact,
        next_cursor=next_cursor,
        from_cursor=cursor is not None,
    )
    return response


async def read_employee(
    request: Request,
    claims: ClaimsDep,
    session: SessionDep,
    emp_id: EmpIdPath,
    if_none_match: IfNoneMatchHeader = None,
) -> Response:
    """One employee by business key, with its `ETag`."""
    return await answer_read(
        request, claims=claims, reads=session, emp_id=emp_id, if_none_match=if_none_match
    )


# Declared like the others, served by a route class that answers a plain request directly.
router.add_api_route(
    EMPLOYEE_PATH,
    read_employee,
    methods=["GET"],
    response_model=EmployeeRead,
    responses={
        200: {"headers": ETAG_HEADER},
        304: {"description": "Not modified: `If-None-Match` names the current version."},
        **error_responses(401, 404, 422),
    },
    operation_id="read_employee",
    route_class_override=ReadEmployeeRoute,
)


def written(
    employee: queries.EmployeeRow, status_code: int = status.HTTP_200_OK, **headers: str
) -> Response:
    """The record a write left, as `EmployeeRead` JSON with its `ETag` (no model validation:
    the row's typed columns serialise straight to JSON, as a read's do)."""
    headers["ETag"] = etag(employee)
    return Response(queries.employee_json(employee), status_code, headers, media_type=JSON)


@router.post(
    "/",
    response_model=EmployeeRead,
    status_code=status.HTTP_201_CREATED,
    responses={
        201: {"headers": headers("ETag", "Location", "Idempotent-Replayed")},
        **CREATE_ERRORS,
    },
    operation_id="create_employee",
)
@router.post("", response_model=EmployeeRead, status_code=201, include_in_schema=False)
async def create_employee(
    actor: AdminActor,
    data: EmployeeCreate,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Create an employee (admin only); a taken `emp_id` is a 409. Safe to retry with a key."""
    if idempotency_key is not None:
        answer = await service.create_employee_once(
            session=session,
            data=data,
            actor=actor,
            key=idempotency_key,
            ttl=timedelta(hours=settings.idempotency_key_ttl_hours),
        )
        headers = answer.headers | ({"Idempotent-Replayed": "true"} if answer.replayed else {})
        return JSONResponse(answer.body, answer.status_code, headers=headers)
    employee = await crud.create_employee(session=session, data=data, actor=actor)
    return written(employee, status.HTTP_201_CREATED, Location=service.location(employee.emp_id))


@router.put(
    EMPLOYEE_PATH,
    response_model=EmployeeRead,
    responses={200: {"headers": ETAG_HEADER}, **WRITE_ERRORS},
    operation_id="replace_employee",
)
async def replace_employee(
    caller: AdminCaller,
    emp_id: EmpIdPath,
    if_match: IfMatchDep,
    data: EmployeeCreate,
    session: SessionDep,
) -> Response:
    """Replace every field of an employee (admin only); `emp_id` may change if it is free."""
    employee = await crud.update_employee(
        session=session, emp_id=emp_id, changes=data.model_dump(), caller=caller, if_match=if_match
    )
    return written(employee)


@router.patch(
    EMPLOYEE_PATH,
    response_model=EmployeeRead,
    responses={200: {"headers": ETAG_HEADER}, **WRITE_ERRORS},
    operation_id="update_employee",
)
async def update_employee(
    caller: AdminCaller,
    emp_id: EmpIdPath,
    if_match: IfMatchDep,
    data: EmployeeUpdate,
    session: SessionDep,
) -> Response:
    """Change only the fields sent (admin only); omitted fields keep their values."""
    employee = await crud.update_employee(
        session=session,
        emp_id=emp_id,
        changes=data.model_dump(exclude_unset=True),
        caller=caller,
        if_match=if_match,
    )
    return written(employee)


@router.delete(
    EMPLOYEE_PATH,
    status_code=status.HTTP_204_NO_CONTENT,
    responses=WRITE_ERRORS,
    operation_id="delete_employee",
)
async def delete_employee(
    caller: AdminCaller, emp_id: EmpIdPath, if_match: IfMatchDep, session: SessionDep
) -> None:
    """Delete an employee (admin only); its history stays readable."""
    await crud.delete_employee(session=session, emp_id=emp_id, caller=caller, if_match=if_match)
