"""The change feed: every create, change and deletion of a record, oldest first, for any
account that reads records. Clients keep the last `event_id` they got and ask for what came
after it."""

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic_core import to_json

from app.accounts.dependencies import EmployeeReader
from app.changes import service
from app.changes.events import ChangeEventRead, feed_item
from app.core.config import SettingsDep
from app.db.session import SessionDep
from app.employees import privacy
from app.http.openapi import error_responses, headers

router = APIRouter(prefix="/employees", tags=["changes"])

MAX_EVENT_ID_LENGTH = 64
AfterQuery = Annotated[
    str | None,
    Query(
        max_length=MAX_EVENT_ID_LENGTH,
        description="The last `event_id` you received: the page starts right after it. "
        "Absent: from the first event.",
    ),
]
LimitQuery = Annotated[int, Query(ge=1, le=1000, description="Events per page.")]


@router.get(
    "/changes",
    response_model=list[ChangeEventRead],
    responses={
        200: {"headers": headers("Link")},
        **error_responses(401, 403, 422),
    },
    operation_id="list_employee_changes",
)
async def list_employee_changes(
    reader: EmployeeReader,
    settings: SettingsDep,
    session: SessionDep,
    request: Request,
    after: AfterQuery = None,
    limit: LimitQuery = 100,
) -> Response:
    """Events after `after`, oldest first: `employee.created`, `employee.updated`,
    `employee.deleted`, each with the fields it changed and the record as that change left it
    (`null` once deleted).

    Poll with the last `event_id` you got (`Link: rel="next"` carries it; an empty page means
    nothing new yet): no event is ever skipped or repeated, even when transactions commit in
    another order than they started. Who made a change is not shown here; administrators and
    auditors read it in the record's history.
    """
    position = await service.resume_after(session=session, event_id=after)
    changes = await service.read_page(session=session, after=position, limit=limit)
    hidden = privacy.hidden_fields(reader.role, settings.employee_dob_visible_to)
    body = to_json([feed_item(change, hidden) for change in changes])
    response = Response(body, media_type="application/json")
    # The next poll starts after the last event given, or where this one did.
    next_after = changes[-1].event_id if changes else after
    following = request.url.remove_query_params(["after", "limit"])
    if next_after is not None:
        following = following.include_query_params(after=next_after)
    following = following.include_query_params(limit=limit)
    response.headers["Link"] = f'<{following}>; rel="next"'
    return response
