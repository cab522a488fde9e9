"""Employee record endpoints: reads for any signed-in user, writes for admins."""

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from app.auth.dependencies import AdminUser, CurrentUser
from app.core.db import SessionDep
from app.core.openapi import error_responses
from app.core.pagination import PageDep, set_page_headers
from app.core.types import SearchTerm
from app.employees import crud
from app.employees.dependencies import EmployeeDep
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
    page: PageDep,
    request: Request,
    response: Response,
    city: CityFilter = None,
    country: CountryFilter = None,
    sort_by: SortField = SortField.emp_id,
    order: SortOrder = SortOrder.asc,
) -> list[Employee]:
    """List employees, filtered and sorted; `X-Total-Count` and `Link` describe the pages."""
    employees, total = await crud.list_employees(
        session=session,
        offset=page.offset,
        limit=page.limit,
        city=city,
        country=country,
        sort_by=sort_by,
        order=order,
    )
    set_page_headers(request, response, page, total)
    return employees


@router.get(
    "/{emp_id}",
    response_model=EmployeeRead,
    responses=error_responses(401, 404, 422),
    operation_id="read_employee",
)
async def read_employee(_: CurrentUser, employee: EmployeeDep) -> Employee:
    """One employee by business key."""
    return employee


@router.post(
    "/",
    response_model=EmployeeRead,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 403, 409, 422),
    operation_id="create_employee",
)
@router.post("", response_model=EmployeeRead, status_code=201, include_in_schema=False)
async def create_employee(
    _: AdminUser, data: EmployeeCreate, session: SessionDep, response: Response
) -> Employee:
    """Create an employee (admin only); a taken `emp_id` is a 409."""
    employee = await crud.create_employee(session=session, data=data)
    response.headers["Location"] = f"/employees/{employee.emp_id}"
    return employee


@router.put(
    "/{emp_id}",
    response_model=EmployeeRead,
    responses=error_responses(401, 403, 404, 409, 422),
    operation_id="replace_employee",
)
async def replace_employee(
    _: AdminUser, employee: EmployeeDep, data: EmployeeCreate, session: SessionDep
) -> Employee:
    """Replace every field of an employee (admin only); `emp_id` may change if it is free."""
    return await crud.update_employee(session=session, employee=employee, changes=data.model_dump())


@router.patch(
    "/{emp_id}",
    response_model=EmployeeRead,
    responses=error_responses(401, 403, 404, 409, 422),
    operation_id="update_employee",
)
async def update_employee(
    _: AdminUser, employee: EmployeeDep, data: EmployeeUpdate, session: SessionDep
) -> Employee:
    """Change only the fields sent (admin only); omitted fields keep their values."""
    changes = data.model_dump(exclude_unset=True)
    return await crud.update_employee(session=session, employee=employee, changes=changes)


@router.delete(
    "/{emp_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 403, 404, 422),
    operation_id="delete_employee",
)
async def delete_employee(_: AdminUser, employee: EmployeeDep, session: SessionDep) -> None:
    """Delete an employee (admin only)."""
    await crud.delete_employee(session=session, employee=employee)
