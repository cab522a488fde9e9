"""Employee record endpoints: reads for any signed-in user, writes for admins.

Every record carries an `ETag` (its id and version): `If-None-Match` makes a read conditional
(304), `If-Match` makes a write conditional (412 when the record changed meanwhile).
"""

from datetime import timedelta

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse

from app.accounts.dependencies import ClaimsDep, EmployeeReader
from app.core.config import SettingsDep, request_settings
from app.db.replica import replica_of
from app.db.session import ReaderDep, SessionDep
from app.employees import service
from app.employees.dependencies import (
    EMPLOYEE_PATH,
    AdminActor,
    CursorQuery,
    EmpIdPath,
    IdempotencyKeyHeader,
    IfMatchDep,
    IfNoneMatchHeader,
    ListViewDep,
    ReadsDep,
)
from app.employees.models import (
    EmployeeCreate,
    EmployeeRead,
    EmployeeRow,
    EmployeeUpdate,
    employee_json,
    employees_json,
    etag,
)
from app.employees.read_route import ReadEmployeeRoute, answer_read
from app.http.openapi import error_responses, headers, page_responses
from app.http.page_tags import PageIfNoneMatch, tagged_page
from app.http.pagination import PageDep, set_keyset_headers
from app.http.versioning import under_request_prefix

router = APIRouter(prefix="/employees", tags=["employees"])

JSON = "application/json"
ETAG_HEADER = headers("ETag")
CREATE_ERRORS = error_responses(401, 403, 409, 422)
CREATE_ERRORS[409] = CREATE_ERRORS[409] | {
    "description": "The `emp_id` is taken; or, with `Retry-After`, the `Idempotency-Key`'s "
    "first request is still being processed.",
    "headers": headers("Retry-After"),
}
WRITE_ERRORS = error_responses(401, 403, 404, 409, 412, 422, 428)


@router.get(
    "/",
    response_model=list[EmployeeRead],
    responses={**page_responses("X-Total-Count-Estimated"), **error_responses(401, 403, 422)},
    operation_id="list_employees",
)
@router.get("", response_model=list[EmployeeRead], include_in_schema=False)
async def list_employees(
    _: EmployeeReader,
    reads: ReadsDep,
    settings: SettingsDep,
    view: ListViewDep,
    page: PageDep,
    request: Request,
    cursor: CursorQuery = None,
    if_none_match: PageIfNoneMatch = None,
) -> Response:
    """List employees, filtered and sorted; `X-Total-Count` and `Link` describe the pages.

    Follow `Link: rel="next"` (a keyset cursor) to walk the list: every page costs the same.

    `X-Total-Count` is exact on the last page of an offset walk (its offset plus its rows) and
    whenever at most `EXACT_COUNT_LIMIT` rows match. Above that, on PostgreSQL, it is the query
    planner's estimate, and the response adds `X-Total-Count-Estimated: true`.

    The page's weak `ETag`, sent back as `If-None-Match`, gets a 304 while the page is unchanged.

    Where `EMPLOYEE_DOB_VISIBLE_TO` hides birth dates from the caller, `emp_dob` is left out
    and `sort_by=emp_dob` is a 403.
    """
    listed = await reads.run(
        lambda session: service.list_employees(
            session=session,
            filters=view.filters,
            page=page,
            cursor=cursor,
            exact_up_to=settings.exact_count_limit,
            estimates=request.app.state.count_estimates,
        )
    )
    # The page's tag digests this body: one made from the whole rows would let a caller test
    # guesses of a hidden birth date against it.
    response = Response(employees_json(listed.rows, view.hidden), media_type=JSON)
    set_keyset_headers(
        request,
        response,
        page,
        listed.total,
        exact=listed.exact,
        next_cursor=listed.next_cursor,
        from_cursor=cursor is not None,
    )
    return tagged_page(response, if_none_match)


async def read_employee(
    request: Request,
    claims: ClaimsDep,
    reader: ReaderDep,
    emp_id: EmpIdPath,
    if_none_match: IfNoneMatchHeader = None,
) -> Response:
    """One employee by business key, with its `ETag`."""
    return await answer_read(
        reader,
        replica=replica_of(request),
        claims=claims,
        emp_id=emp_id,
        if_none_match=if_none_match,
        dob_visible_to=request_settings(request).employee_dob_visible_to,
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


def written(employee: EmployeeRow, status_code: int = status.HTTP_200_OK, **extra: str) -> Response:
    """The record a write left, as `EmployeeRead` JSON with its `ETag` (no model validation:
    the row's typed columns serialise straight to JSON, as a read's do)."""
    extra["ETag"] = etag(employee)
    return Response(employee_json(employee), status_code, extra, media_type=JSON)


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
    request: Request,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Create an employee (admin only); a taken `emp_id` is a 409. Safe to retry with a key."""
    if idempotency_key is not None:
        ttl = timedelta(hours=settings.idempotency_key_ttl_hours)
        answer = await service.create_employee_once(
            session=session, data=data, actor=actor, key=idempotency_key, ttl=ttl
        )
        headers = dict(answer.headers)
        if "Location" in headers:
            # Stored without a version prefix: a retry gets the one it was sent to.
            headers["Location"] = under_request_prefix(request.scope, headers["Location"])
        if answer.replayed:
            headers["Idempotent-Replayed"] = "true"
        return JSONResponse(answer.body, answer.status_code, headers=headers)
    employee = await service.create_employee(session=session, data=data, actor=actor)
    location = under_request_prefix(request.scope, service.location(employee.emp_id))
    return written(employee, status.HTTP_201_CREATED, Location=location)


@router.put(
    EMPLOYEE_PATH,
    response_model=EmployeeRead,
    responses={200: {"headers": ETAG_HEADER}, **WRITE_ERRORS},
    operation_id="replace_employee",
)
async def replace_employee(
    claims: ClaimsDep,
    emp_id: EmpIdPath,
    if_match: IfMatchDep,
    data: EmployeeCreate,
    session: SessionDep,
) -> Response:
    """Replace every field of an employee (admin only); `emp_id` may change if it is free."""
    employee = await service.update_employee(
        session=session, claims=claims, emp_id=emp_id, changes=data.model_dump(), if_match=if_match
    )
    return written(employee)


@router.patch(
    EMPLOYEE_PATH,
    response_model=EmployeeRead,
    responses={200: {"headers": ETAG_HEADER}, **WRITE_ERRORS},
    operation_id="update_employee",
)
async def update_employee(
    claims: ClaimsDep,
    emp_id: EmpIdPath,
    if_match: IfMatchDep,
    data: EmployeeUpdate,
    session: SessionDep,
) -> Response:
    """Change only the fields sent (admin only); omitted fields keep their values."""
    changes = data.model_dump(exclude_unset=True)
    employee = await service.update_employee(
        session=session, claims=claims, emp_id=emp_id, changes=changes, if_match=if_match
    )
    return written(employee)


@router.delete(
    EMPLOYEE_PATH,
    status_code=status.HTTP_204_NO_CONTENT,
    responses=WRITE_ERRORS,
    operation_id="delete_employee",
)
async def delete_employee(
    claims: ClaimsDep, emp_id: EmpIdPath, if_match: IfMatchDep, session: SessionDep
) -> None:
    """Delete an employee (admin only); its history stays readable."""
    await service.delete_employee(session=session, claims=claims, emp_id=emp_id, if_match=if_match)
