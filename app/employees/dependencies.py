"""The employee path parameter, the list's filters and the fields its caller sees, the
conditional-request headers, and the writer of a change."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request

from app.accounts.dependencies import ClaimsDep, CurrentPrincipal, get_access
from app.core.config import request_settings
from app.core.types import INT32_MAX, SearchTerm
from app.db.reads import Reads, reads_for
from app.db.session import ReaderDep
from app.employees import privacy, service
from app.employees.history.models import Actor
from app.employees.models import ListFilters, SortField, SortOrder
from app.http.pagination import MAX_CURSOR_LENGTH
from app.http.preconditions import IF_NONE_MATCH_MAX_LENGTH, IfMatch
from app.http.routing import segment_except

EmpIdPath = Annotated[int, Path(ge=1, le=INT32_MAX, description="The employee's business key.")]
# One record's path: any segment but the literal paths beside it (the CSV routes), whose other
# methods are then a 405 rather than an invalid emp_id: the CSV routes and the change feed's.
EMPLOYEE_PATH = (
    "/{emp_id:" + segment_except("employee_key", "export.csv", "import", "changes", "events") + "}"
)

CityFilter = Annotated[
    SearchTerm | None, Query(description="Case-insensitive substring of the city.")
]
CountryFilter = Annotated[
    SearchTerm | None, Query(description="Case-insensitive substring of the country.")
]


async def list_filters(
    city: CityFilter = None,
    country: CountryFilter = None,
    sort_by: SortField = SortField.emp_id,
    order: SortOrder = SortOrder.asc,
) -> ListFilters:
    return ListFilters(city, country, sort_by, order)


ListFiltersDep = Annotated[ListFilters, Depends(list_filters)]


@dataclass(frozen=True, slots=True)
class ListView:
    """A list or an export as its caller may read it: the filters, and the fields left out."""

    filters: ListFilters
    hidden: tuple[str, ...]


async def get_list_view(
    filters: ListFiltersDep, principal: CurrentPrincipal, request: Request
) -> ListView:
    """The list's filters, once the caller may sort by the key it asked for (403 otherwise)."""
    visible_to = request_settings(request).employee_dob_visible_to
    hidden = privacy.hidden_fields(principal.role, visible_to)
    privacy.refuse_hidden_sort(filters.sort_by.value, hidden)
    return ListView(filters, hidden)


ListViewDep = Annotated[ListView, Depends(get_list_view)]
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
IfMatchHeader = Annotated[
    str | None,
    Header(
        max_length=1000,
        description="Write only if the record still has this `ETag` (or `*`); 412 otherwise.",
    ),
]
IfNoneMatchHeader = Annotated[
    str | None,
    Header(
        max_length=IF_NONE_MATCH_MAX_LENGTH,
        description="Answer 304 with no body if the record still has this `ETag`.",
    ),
]


async def get_if_match(request: Request, if_match: IfMatchHeader = None) -> IfMatch:
    return IfMatch(if_match, required=request_settings(request).require_if_match)


# A write's precondition: checked against the record once it is locked (app.employees.service).
IfMatchDep = Annotated[IfMatch, Depends(get_if_match)]


async def get_admin_actor(claims: ClaimsDep, reader: ReaderDep) -> Actor:
    """An account that may write (an administrator, or a key of one with `employees:write`),
    described for the audit trail: for writes that do not read the record first (create,
    import); the others admit the account with the record they lock."""
    return service.writer(claims, await get_access(reader=reader, claims=claims))


AdminActor = Annotated[Actor, Depends(get_admin_actor)]


async def get_reads(request: Request, principal: CurrentPrincipal) -> Reads:
    """Where the caller's reads go: the read replica, unless it lags, is down, or has not yet
    replayed the caller's last write; the account itself was checked on the primary."""
    return await reads_for(request, principal.id)


ReadsDep = Annotated[Reads, Depends(get_reads)]
