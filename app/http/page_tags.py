"""Weak `ETag`s of list pages: a client polling a page gets a 304 while nothing on it changed."""

import hashlib
from collections.abc import Mapping
from typing import Annotated

from fastapi import Header, Response, status

from app.http.preconditions import IF_NONE_MATCH_MAX_LENGTH, none_match

# What describes a page besides its rows: when any of them changes, the page has changed.
TAGGED_HEADERS = ("X-Total-Count", "X-Total-Count-Estimated", "Link")

PageIfNoneMatch = Annotated[
    str | None,
    Header(
        max_length=IF_NONE_MATCH_MAX_LENGTH,
        description="Answer 304 with no body while the page still has this `ETag` "
        "(or one of several, or `*`).",
    ),
]


def page_etag(body: bytes | memoryview, headers: Mapping[str, str]) -> str:
    """A digest of what the client receives that can change: the body and the page's headers.

    Weak: the same page sent in another encoding (compressed, say) is the same page.
    """
    digest = hashlib.blake2b(digest_size=16)
    for name in TAGGED_HEADERS:
        if name in headers:
            # No header value holds a line break, so the lines cannot run into each other.
            digest.update(f"{name}: {headers[name]}\n".encode("latin-1"))
    digest.update(b"\n")
    digest.update(body)
    return f'W/"{digest.hexdigest()}"'


def tagged_page(response: Response, if_none_match: str | None) -> Response:
    """The page with its weak `ETag`, or a 304 with the tag alone when `If-None-Match` names it
    (weak comparison, RFC 9110 13.1.2); a malformed `If-None-Match` is a 422."""
    tag = page_etag(response.body, response.headers)
    if none_match(if_none_match, tag.removeprefix("W/")):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": tag})
    response.headers["ETag"] = tag
    return response
