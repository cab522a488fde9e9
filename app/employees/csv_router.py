"""Employees as CSV: a streamed export for any signed-in user, a checked import for admins.

The CSV format is described in `app.employees.csv_io`.
"""

from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, File, Query, Request, UploadFile, status
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit.dependencies import AdminActor
from app.auth.dependencies import CurrentPrincipal, SettingsDep
from app.core.db import SessionDep, close_session
from app.core.openapi import error_responses
from app.employees import csv_format, csv_io
from app.employees.csv_format import Row, RowError
from app.employees.models import SortField, SortOrder
from app.employees.router import CityFilter, CountryFilter

router = APIRouter(prefix="/employees", tags=["employees"])

CSV_EXAMPLE = (
    "emp_id,emp_name,city,country,emp_dob\r\n1001,Ada Lovelace,London,United Kingdom,1985-12-10\r\n"
)


class ImportResult(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"created": 250}]})

    created: int


class DryRunResult(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"valid": 250}]})

    valid: int


@router.get(
    "/export.csv",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Every matching employee, one CSV record per line after the header.",
            "content": {"text/csv": {"schema": {"type": "string"}, "example": CSV_EXAMPLE}},
            "headers": {
                "Content-Disposition": {"description": 'attachment; filename="employees.csv"'}
            },
        },
        **error_responses(401, 422),
    },
    operation_id="export_employees_csv",
)
async def export_employees_csv(
    _: CurrentPrincipal,
    session: SessionDep,
    request: Request,
    city: CityFilter = None,
    country: CountryFilter = None,
    sort_by: SortField = SortField.emp_id,
    order: SortOrder = SortOrder.asc,
) -> StreamingResponse:
    """Download the employees as CSV, with the list's filters and sort; streamed in batches."""
    # The session dependency would close only after the last byte: a slow download would hold
    # its connection all along. It is done once the user is known; each page gets its own.
    await close_session(session)
    state = request.app.state
    sessionmaker = getattr(state, "read_sessionmaker", state.sessionmaker)
    lines = _csv_stream(sessionmaker, city=city, country=country, sort_by=sort_by, order=order)
    return StreamingResponse(
        lines,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="employees.csv"'},
    )


async def _csv_stream(
    sessionmaker: async_sessionmaker[AsyncSession], **filters: Any
) -> AsyncIterator[bytes]:
    yield csv_format.format_header().encode()
    async for employees in csv_io.read_batches(sessionmaker, **filters):
        yield csv_format.format_rows(employees).encode()


@router.post(
    "/import",
    response_model=ImportResult,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": DryRunResult, "description": "`dry_run=true`: every row is valid."},
        **error_responses(401, 403, 409, 422),
    },
    operation_id="import_employees_csv",
)
async def import_employees_csv(
    actor: AdminActor,
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[
        UploadFile,
        File(description="CSV: header `emp_id,emp_name,city,country,emp_dob`, UTF-8."),
    ],
    dry_run: Annotated[
        bool, Query(description="Only check the file; write nothing (200 with the row count).")
    ] = False,
) -> Any:
    """Create employees from a CSV file (admin only): every row is written, or none.

    Every row is checked first (the rules of `POST /employees/`, duplicate `emp_id`s in the
    file or already stored); any error is a 422 listing each one with its line and field.
    """
    items = await anyio.to_thread.run_sync(_parse, file)
    validation = await csv_io.validate(
        session=session, items=items, max_rows=settings.import_max_rows
    )
    if validation.error_total:
        raise csv_io.ImportRejectedError(validation)
    if dry_run:
        return JSONResponse({"valid": validation.count})
    created = await csv_io.write_all(
        session=session, batches=csv_io.batched(validation.rows), actor=actor
    )
    return ImportResult(created=created)


def _parse(file: UploadFile) -> list[Row | RowError]:
    return list(csv_format.read_rows(csv_format.decode_lines(file.file)))
