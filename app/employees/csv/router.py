"""Employees as CSV: a streamed export for any signed-in user (without the fields their role may
not see), a checked import for admins.

The CSV format is described in `app.employees.csv.format`.
"""

from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, File, Query, UploadFile, status
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import Send

from app.accounts.dependencies import EmployeeReader
from app.core.config import SettingsDep
from app.db.driver import session_driver
from app.db.reads import Reads
from app.db.session import SessionDep, database
from app.employees import crud
from app.employees.csv import copy_out, staging
from app.employees.csv import format as csv_format
from app.employees.csv import io as csv_io
from app.employees.csv.format import Cells, Row, RowError
from app.employees.dependencies import AdminActor, ListViewDep, ReadsDep
from app.employees.models import ListFilters
from app.http.openapi import error_responses

router = APIRouter(prefix="/employees", tags=["employees"])

CSV_EXAMPLE = (
    "emp_id,emp_name,city,country,emp_dob\r\n4242,Ada Lovelace,London,United Kingdom,1985-12-10\r\n"
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
        **error_responses(401, 403, 422),
    },
    operation_id="export_employees_csv",
)
async def export_employees_csv(
    _: EmployeeReader, reads: ReadsDep, view: ListViewDep
) -> StreamingResponse:
    """Download the employees as CSV, with the list's filters and sort; streamed in batches.

    Where `EMPLOYEE_DOB_VISIBLE_TO` hides birth dates from the caller, the `emp_dob` column is
    left out and `sort_by=emp_dob` is a 403.
    """
    options: dict[str, Any] = {
        "media_type": "text/csv; charset=utf-8",
        "headers": {"Content-Disposition": 'attachment; filename="employees.csv"'},
    }
    columns = csv_format.columns_shown(view.hidden)
    if database(reads.request).engine.dialect.driver == "asyncpg" and not reads.on_replica():
        sessions = database(reads.request).read_sessions
        return CopyResponse(sessions, view.filters, columns, **options)
    # SQLite, or a read replica: page by page, each page on the replica or, if it fails, the
    # primary (a COPY cut short by a failing replica could not go on elsewhere).
    return StreamingResponse(_csv_stream(reads, view.filters, columns), **options)


class CopyResponse(StreamingResponse):
    """PostgreSQL: one `COPY ... TO STDOUT` on a connection of its own, sent as it comes."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        filters: ListFilters,
        columns: Sequence[str],
        **options: Any,
    ) -> None:
        super().__init__(iter(()), **options)
        self.sessionmaker = sessionmaker
        self.filters = filters
        self.columns = columns

    async def stream_response(self, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code}
        await send(start | {"headers": self.raw_headers})

        async def write(chunk: bytes) -> None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        async with self.sessionmaker() as session:
            driver, _ = await session_driver(session)
            try:
                await copy_out.copy_csv(driver, self.filters, write, self.columns)
            except BaseException:
                # A COPY cut short (the client left) leaves nothing to reuse on its connection.
                with anyio.CancelScope(shield=True):
                    await session.invalidate()
                raise
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _csv_stream(
    reads: Reads, filters: ListFilters, columns: Sequence[str]
) -> AsyncIterator[bytes]:
    yield csv_format.format_header(columns).encode()
    # A session per page, none in between: a slow download holds no connection all along.
    async for employees in csv_io.read_batches(reads.each, filters):
        yield csv_format.format_rows(employees, columns).encode()


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
    if await staging.supports_copy(session):
        # PostgreSQL: COPY into a staging table, checked and written there (csv.staging).
        cells = await anyio.to_thread.run_sync(_parse_cells, file)
        count = await staging.import_cells(
            session=session,
            items=cells,
            actor=actor,
            max_rows=settings.import_max_rows,
            dry_run=dry_run,
        )
        return JSONResponse({"valid": count}) if dry_run else ImportResult(created=count)
    items = await anyio.to_thread.run_sync(_parse, file)
    validation = await csv_io.validate(
        session=session, items=items, max_rows=settings.import_max_rows
    )
    if validation.error_total:
        raise csv_io.ImportRejectedError(validation)
    if dry_run:
        return JSONResponse({"valid": validation.count})
    created = await crud.insert_all(
        session=session, batches=csv_io.batched(validation.rows), actor=actor
    )
    return ImportResult(created=created)


def _parse(file: UploadFile) -> list[Row | RowError]:
    return list(csv_format.read_rows(csv_format.decode_lines(file.file)))


def _parse_cells(file: UploadFile) -> list[Cells | RowError]:
    return list(csv_format.read_cells(csv_format.decode_lines(file.file)))
