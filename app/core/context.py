"""What code deep in a request may need without a Request at hand: the request's id."""

from contextvars import ContextVar

# Set by the request-id middleware for the request's whole task (logging, audit rows).
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    return request_id_var.get()
