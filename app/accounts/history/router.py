"""An account's history, for administrators and auditors."""

from fastapi import Request, Response

from app.accounts.dependencies import AccountReader, keyless_router
from app.accounts.history import crud
from app.accounts.history.models import AccountEventRead, account_events_json
from app.accounts.users_router import USER_PATH, UserIdPath
from app.core.errors import NotFoundError
from app.db.session import ReadSessionDep
from app.http.openapi import error_responses, page_responses
from app.http.page_tags import PageIfNoneMatch, tagged_page
from app.http.pagination import PageDep, set_page_headers

router = keyless_router("/users", "users")  # no API key may read it


@router.get(
    USER_PATH + "/history",
    response_model=list[AccountEventRead],
    responses={**page_responses(), **error_responses(401, 403, 404, 422)},
    operation_id="read_user_history",
)
async def read_user_history(
    _: AccountReader,
    user_id: UserIdPath,
    session: ReadSessionDep,
    page: PageDep,
    request: Request,
    if_none_match: PageIfNoneMatch = None,
) -> Response:
    """An account's role changes, (de)activations, deletion and API keys made or revoked, newest
    first (admins and auditors); paginated like an employee's history.

    Answers for deleted accounts too. `If-None-Match` with the page's weak `ETag` gets a 304
    while the page is unchanged.
    """
    if not await crud.account_is_known(session=session, account_id=user_id):
        raise NotFoundError("User not found")
    events, total = await crud.list_account_events(
        session=session, account_id=user_id, offset=page.offset, limit=page.limit
    )
    response = Response(account_events_json(events), media_type="application/json")
    set_page_headers(request, response, page, total)
    return tagged_page(response, if_none_match)
