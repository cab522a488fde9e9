"""An employee's change history, for administrators and auditors."""

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.dependencies import HistoryReader
from app.core.config import SettingsDep
from app.core.errors import NotFoundError
from app.employees import privacy
from app.employees.dependencies import EMPLOYEE_PATH, EmpIdPath, ReadsDep
from app.employees.history import crud
from app.employees.history.models import AuditEntryRead, EmployeeAudit, audit_entries_json
from app.http.openapi import error_responses, page_responses
from app.http.page_tags import PageIfNoneMatch, tagged_page
from app.http.pagination import PageDep, set_page_headers

router = APIRouter(prefix="/employees", tags=["employees"])


@router.get(
    EMPLOYEE_PATH + "/history",
    response_model=list[AuditEntryRead],
    responses={**page_responses(), **error_responses(401, 403, 404, 422)},
    operation_id="read_employee_history",
)
async def read_employee_history(
    reader: HistoryReader,
    settings: SettingsDep,
    emp_id: EmpIdPath,
    reads: ReadsDep,
    page: PageDep,
    request: Request,
    if_none_match: PageIfNoneMatch = None,
) -> Response:
    """Every create, change and deletion of an employee, newest first (admins and auditors).

    Answers for deleted employees too; for an `emp_id` that moved, it follows the record that
    holds it now, or else the last one that held it. `If-None-Match` with the page's weak
    `ETag` gets a 304 while the page is unchanged. Where `EMPLOYEE_DOB_VISIBLE_TO` hides birth
    dates from the caller, the changes leave `emp_dob` out.
    """

    async def read(session: AsyncSession) -> tuple[list[EmployeeAudit], int]:
        employee_id = await crud.find_employee_id(session=session, emp_id=emp_id)
        if employee_id is None:
            raise NotFoundError(f"No history for employee {emp_id}")
        return await crud.list_history(
            session=session, employee_id=employee_id, offset=page.offset, limit=page.limit
        )

    entries, total = await reads.run(read)
    hidden = privacy.hidden_fields(reader.role, settings.employee_dob_visible_to)
    response = Response(audit_entries_json(entries, hidden), media_type="application/json")
    set_page_headers(request, response, page, total)
    return tagged_page(response, if_none_match)
