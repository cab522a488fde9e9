"""Documented error answers, so /openapi.json lists every status an operation can return."""

from typing import Any

from pydantic import BaseModel, ConfigDict


class ErrorMessage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"detail": "Employee 42 not found"}]})

    detail: str


class ValidationIssue(BaseModel):
    type: str
    loc: list[str | int]
    msg: str


class ValidationErrorMessage(BaseModel):
    detail: list[ValidationIssue]


_DESCRIPTIONS = {
    401: "Missing, invalid or expired bearer token, or an inactive account.",
    403: "Authenticated, but the account is not an administrator.",
    404: "No such record.",
    409: "The record conflicts with an existing one (a unique key is taken).",
    422: "The request's body, query or path is invalid.",
    429: "Too many failed sign-ins for this account; retry after the `Retry-After` seconds.",
    503: "The database is unavailable; retry after the `Retry-After` seconds.",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    responses: dict[int | str, dict[str, Any]] = {}
    for code in (*codes, 503):
        model = ValidationErrorMessage if code == 422 else ErrorMessage
        responses[code] = {"model": model, "description": _DESCRIPTIONS[code]}
    return responses
