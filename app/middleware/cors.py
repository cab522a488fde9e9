"""CORS for the browser origins named in CORS_ORIGINS (Starlette's middleware does the work)."""

from typing import Any

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "If-Match",
    "If-None-Match",
    "Idempotency-Key",
    "X-Request-ID",
]
EXPOSED_HEADERS = [
    "X-Total-Count",
    "X-Total-Count-Estimated",
    "Link",
    "Location",
    "Retry-After",
    "ETag",
    "Idempotent-Replayed",
    "X-Request-ID",
]


def cors_options(origins: list[str]) -> dict[str, Any]:
    # Bearer tokens travel in a header, not cookies, so credentials mode is not needed.
    return {
        "allow_origins": origins,
        "allow_methods": METHODS,
        "allow_headers": REQUEST_HEADERS,
        "expose_headers": EXPOSED_HEADERS,
    }
