"""Employee record endpoints: reads for any signed-in user, writes for admins.

Every record carries an `ETag` (its id and version): `If-None-Match` makes a read conditional
(304), `If-Match` makes a write conditional (412 when the record changed meanwhile).
"""

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse

from app.audit.dependencies import AdminActor
from app.auth.dependencies import CurrentUser, SettingsDep
from app.core.db import SessionDep
from app.core.openapi import error_responses
from app.core.pagination import (
    MAX_CURSOR_LENGTH,
    InvalidCursorError,
    PageDep,
    set_keyset_headers,
)
from app.core.preconditions import none_match
from app.core.types import SearchTerm
from app.employees import crud, paging, service
from app.employees.dependencies import EmployeeDep, IfNoneMatchHeader, WriteTargetDep
from app.employees.models import (
    Employee,
    EmployeeCreate,
    EmployeeRead,
    EmployeeUpdate,
    SortField,
    SortOrder,
)

router = APIRouter(prefix="/employees", tags=["employees"])

CityFilter = Annotated[
    SearchTerm | None, Query(description="Case-insensitive substring of the city.")
]
CountryFilter = Annotated[
    SearchTerm | None, Query(description="Case-insensitive substring of the country.")
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
ETAG_HEADER = {"ETag": {"description": "The record's version tag, for If-Match/If-None-Match."}}
WRITE_ERRORS = error_responses(401, 403, 404, 409, 412, 422, 428)


@router.get(
    "/",
    response_model=list[EmployeeRead],
    responses=error_responses(401, 422),
    operation_id="list_employees",
)
@router.get("", response_model=list[EmployeeRead], include_in_schema=False)
async def list_employees(
    _: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    page: PageDep,
    request: Request,
    response: Response,
    city: CityFilter = None,
    country: CountryFilter = None,
    sort_by: SortField = SortField.emp_id,
    order: SortOrder = SortOrder.asc,
    cursor: CursorQuery = None,
) -> list[Employee]:
    """List employees, filtered and sorted; `X-Total-Count` and `Link` describe the pages.

    Follow `Link: rel="next"` (a keyset cursor) to walk the list: every page costs the same.
    """
    after = None
    if cursor is not None:
        if page.offset:
            raise InvalidCursorError("cannot be combined with offset")
        after = paging.parse_cursor(cursor, sort_by, order)
    employees, more = await crud.list_employees(
        session=session,
        limit=page.limit,
        offset=page.offset,
        after=after,
        city=city,
        country=country,
        sort_by=sort_by,
        order=order,
    )
    total, exact = await crud.count_employees(
        session=session, city=city, country=country, exact_up_to=settings.exact_count_limit
    )
    next_cursor = paging.cursor_after(employees[-1], sort_by, order) if more else None
    set_keyset_headers(
        request,
        response,
        page,
        total,
        exact=exact,
        next_cursor=next_cursor,
        from_cursor=cursor is not None,
    )
    return employees


@router.get(
    "/{emp_id}",
    response_model=EmployeeRead,
    responses={
        200: {"headers": ETAG_HEADER},
        304: {"description": "Not modified: `If-None-Match` names the current version."},
        **error_responses(401, 404, 422),
    },
    operation_id="read_employee",
)
async def read_employee(
    _: CurrentUser,
    employee: EmployeeDep,
    response: Response,
    if_none_match: IfNoneMatchHeader = None,
) -> Any:
    """One employee by business key, with its `ETag`."""
    if none_match(if_none_match, employee.etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": employee.etag})
    response.headers["ETag"] = employee.etag
    return employee


@router.post(
    "/",
    response_model=EmployeeRead,
    status_code=status.HTTP_201_CREATED,
    responses={201: {"headers": ETAG_HEADER}, **error_responses(401, 403, 409, 422)},
    operation_id="create_employee",
)
@router.post("", response_model=EmployeeRead, status_code=201, include_in_schema=False)
async def create_employee(
    actor: AdminActor,
    data: EmployeeCreate,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Any:
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
    response.headers["Location"] = service.location(employee)
    response.headers["ETag"] = employee.etag
    return employee


@router.put(
    "/{emp_id}",
    response_model=EmployeeRead,
    responses={200: {"headers": ETAG_HEADER}, **WRITE_ERRORS},
    operation_id="replace_employee",
)
async def replace_employee(
    actor: AdminActor,
    target: WriteTargetDep,
    data: EmployeeCreate,
    session: SessionDep,
    response: Response,
) -> Employee:
    """Replace every field of an employee (admin only); `emp_id` may change if it is free."""
    employee = await crud.update_employee(
        session=session,
        employee=target.employee,
        changes=data.model_dump(),
        actor=actor,
        conditional=target.conditional,
    )
    response.headers["ETag"] = employee.etag
    return employee


@router.patch(
    "/{emp_id}",
    response_model=EmployeeRead,
    responses={200: {"headers": ETAG_HEADER}, **WRITE_ERRORS},
    operation_id="update_employee",
)
async def update_employee(
    actor: AdminActor,
    target: WriteTargetDep,
    data: EmployeeUpdate,
    session: SessionDep,
    response: Response,
) -> Employee:
    """Change only the fields sent (admin only); omitted fields keep their values."""
    employee = await crud.update_employee(
        session=session,
        employee=target.employee,
        changes=data.model_dump(exclude_unset=True),
        actor=actor,
        conditional=target.conditional,
    )
    response.headers["ETag"] = employee.etag
    return employee


@router.delete(
    "/{emp_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=WRITE_ERRORS,
    operation_id="delete_employee",
)
async def delete_employee(actor: AdminActor, target: WriteTargetDep, session: SessionDep) -> None:
    """Delete an employee (admin only); its history stays readable."""
    await crud.delete_employee(
        session=session, employee=target.employee, actor=actor, conditional=target.conditional
    )
