"""Pagination: offset pages, keyset cursors, `X-Total-Count` and an RFC 8288 `Link` header."""

import base64
import binascii
import json
import unicodedata
from typing import Annotated, Any

from fastapi import Depends, Query, Request, Response
from pydantic import BaseModel

from app.core.errors import InvalidInputError
from app.core.types import INT32_MAX

MAX_PAGE_SIZE = 100


class Page(BaseModel):
    offset: int
    limit: int


async def page_params(
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


def set_keyset_headers(
    request: Request,
    response: Response,
    page: Page,
    total: int,
    *,
    exact: bool,
    next_cursor: str | None,
    from_cursor: bool,
) -> None:
    """Headers of a list whose `next` link is a keyset cursor: deep pages cost what the first does.

    `prev` is given for offset pages only; a cursor leads forward.
    """
    response.headers["X-Total-Count"] = str(total)
    if not exact:
        response.headers["X-Total-Count-Estimated"] = "true"
    base = request.url.remove_query_params(["offset", "cursor"])
    links = {"first": base.include_query_params(offset=0, limit=page.limit)}
    if not from_cursor and page.offset > 0:
        previous = max(min(page.offset, total) - page.limit, 0)
        links["prev"] = base.include_query_params(offset=previous, limit=page.limit)
    if next_cursor is not None:
        links["next"] = base.include_query_params(cursor=next_cursor, limit=page.limit)
    response.headers["Link"] = ", ".join(f'<{url}>; rel="{rel}"' for rel, url in links.items())


MAX_CURSOR_LENGTH = 600


def encode_cursor(values: list[Any]) -> str:
    """An opaque, URL-safe token for a position in an ordered list."""
    raw = json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(token: str) -> list[Any]:
    """The values `encode_cursor` packed; anything else is a 422 on the `cursor` parameter."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        values = json.loads(raw.decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        values = None
    if not isinstance(values, list) or not all(map(_storable, values)):
        raise InvalidCursorError()
    return values


def _storable(value: Any) -> bool:
    """Whether a decoded value could have come from a column: JSON's escapes can spell lone
    surrogates and control characters, which no stored text holds and no driver can send."""
    if isinstance(value, str):
        return not any(unicodedata.category(char) in ("Cc", "Cs") for char in value)
    return value is None or isinstance(value, bool | int | float)


class InvalidCursorError(InvalidInputError):
    code = "invalid_cursor"

    def __init__(self, detail: str = "is not a cursor this API issued") -> None:
        super().__init__(f"cursor {detail}; follow the Link header", loc=("query", "cursor"))
