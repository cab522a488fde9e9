"""Conditional requests (RFC 9110 section 13): entity tags, `If-Match` and `If-None-Match`."""

import re
from dataclasses import dataclass

from app.core.errors import (
    InvalidInputError,
    PreconditionFailedError,
    PreconditionRequiredError,
)

# Room for a couple of dozen tags; a longer header is a 422 before any lookup.
IF_NONE_MATCH_MAX_LENGTH = 1000

# An entity-tag: an optional weakness prefix and a quoted string of visible characters.
_ENTITY_TAG = re.compile(r'\s*(W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')


@dataclass(frozen=True, slots=True)
class IfMatch:
    """A write's `If-Match` header, and whether the service requires one."""

    header: str | None = None
    required: bool = False

    def check(self, current: str) -> bool:
        return check_if_match(self.header, current, required=self.required)


class MalformedPreconditionError(InvalidInputError):
    code = "malformed_precondition"


def _parse(header: str, name: str) -> list[tuple[bool, str]] | None:
    """The tags of a header as (weak, opaque-tag) pairs; None stands for `*`."""
    if header.strip() == "*":
        return None
    tags, position = [], 0
    while position < len(header):
        match = _ENTITY_TAG.match(header, position)
        if match is None or match.end() == position:
            raise MalformedPreconditionError(
                f'{name} must be "*" or a comma-separated list of quoted entity tags',
                loc=("header", name.lower()),
            )
        tags.append((match.group(1) is not None, match.group(2)))
        position = match.end()
    if not tags:
        raise MalformedPreconditionError(f"{name} must not be empty", loc=("header", name.lower()))
    return tags


def check_if_match(header: str | None, current: str, *, required: bool) -> bool:
    """Refuse a write whose `If-Match` does not name the current version (strong comparison).

    True when the caller named versions, so the write must apply to exactly this one.
    """
    if header is None:
        if required:
            raise PreconditionRequiredError(
                "This write needs an If-Match header with the record's current ETag"
            )
        return False
    tags = _parse(header, "If-Match")
    if tags is None:
        return False  # "*": any version; the record exists, or the caller already got 404
    if not any(not weak and tag == current for weak, tag in tags):
        raise PreconditionFailedError(
            "The record changed since you read it; fetch it again for the current ETag"
        )
    return True


def none_match(header: str | None, current: str) -> bool:
    """True when `If-None-Match` names the current version (weak comparison): answer 304."""
    if header is None:
        return False
    tags = _parse(header, "If-None-Match")
    return tags is None or any(tag == current for _, tag in tags)
