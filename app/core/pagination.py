"""Offset pagination headers: `X-Total-Count` and an RFC 8288 `Link` header."""

from typing import Annotated

from fastapi import Depends, Query, Request, Response
from pydantic import BaseModel

from app.core.types import INT32_MAX

MAX_PAGE_SIZE = 100


class Page(BaseModel):
    offset: int
    limit: int


def page_params(
    offset: Annotated[int, Query(ge=0, le=INT32_MAX, description="Rows to skip.")] = 0,
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE_SIZE, description="Rows per page (at most 100).")
    ] = MAX_PAGE_SIZE,
) -> Page:
    return Page(offset=offset, limit=limit)


PageDep = Annotated[Page, Depends(page_params)]


def set_page_headers(request: Request, response: Response, page: Page, total: int) -> None:
    """Describe where this page sits: total rows, and links to the first, previous and next."""
    response.headers["X-Total-Count"] = str(total)
    links = {"first": 0}
    if page.offset > 0:
        # From beyond the end, "prev" leads back to the last page that has rows.
        links["prev"] = max(min(page.offset, total) - page.limit, 0)
    if page.offset + page.limit < total:
        links["next"] = page.offset + page.limit
    response.headers["Link"] = ", ".join(
        f'<{request.url.include_query_params(offset=offset, limit=page.limit)}>; rel="{rel}"'
        for rel, offset in links.items()
    )
