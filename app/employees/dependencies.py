"""The employee path parameter and the conditional-request headers."""

from typing import Annotated

from fastapi import Depends, Header, Path, Request

from app.auth.dependencies import request_settings
from app.core.routing import segment_except
from app.core.types import INT32_MAX
from app.employees import crud

EmpIdPath = Annotated[int, Path(ge=1, le=INT32_MAX, description="The employee's business key.")]
# One record's path: any segment but the literal paths beside it (the CSV routes), whose other
# methods are then a 405 rather than an invalid emp_id.
EMPLOYEE_PATH = "/{emp_id:" + segment_except("employee_key", "export.csv", "import") + "}"

IfMatchHeader = Annotated[
    str | None,
    Header(
        max_length=1000,
        description="Write only if the record still has this `ETag` (or `*`); 412 otherwise.",
    ),
]
IF_NONE_MATCH_MAX_LENGTH = 1000
IfNoneMatchHeader = Annotated[
    str | None,
    Header(
        max_length=IF_NONE_MATCH_MAX_LENGTH,
        description="Answer 304 with no body if the record still has this `ETag`.",
    ),
]


async def get_if_match(request: Request, if_match: IfMatchHeader = None) -> crud.IfMatch:
    return crud.IfMatch(if_match, required=request_settings(request).require_if_match)


# A write's precondition: checked against the record once it is locked (app.employees.crud).
IfMatchDep = Annotated[crud.IfMatch, Depends(get_if_match)]
