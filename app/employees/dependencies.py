"""Path parameters resolved to records."""

from typing import Annotated

from fastapi import Depends, Path

from app.core.db import SessionDep
from app.core.errors import NotFoundError
from app.core.types import INT32_MAX
from app.employees import crud
from app.employees.models import Employee

EmpIdPath = Annotated[int, Path(ge=1, le=INT32_MAX, description="The employee's business key.")]


async def get_employee_or_404(emp_id: EmpIdPath, session: SessionDep) -> Employee:
    employee = await crud.get_employee_by_emp_id(session=session, emp_id=emp_id)
    if employee is None:
        raise NotFoundError(f"Employee {emp_id} not found")
    return employee


EmployeeDep = Annotated[Employee, Depends(get_employee_or_404)]
