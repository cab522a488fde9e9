"""Documented error answers, so /openapi.json lists every status an operation can return."""

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict


class ErrorMessage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"detail": "Employee 42 not found"}]})

    detail: str


class ValidationIssue(BaseModel):
    type: str
    loc: list[str | int]
    msg: str


class ValidationErrorMessage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "detail": [
                        {"type": "missing", "loc": ["body", "emp_name"], "msg": "Field required"}
                    ]
                }
            ]
        }
    )

    detail: list[ValidationIssue]


# The order of the sections in /docs: the main resource first, then signing in and accounts.
OPENAPI_TAGS = [
    {
        "name": "employees",
        "description": "Employee records: any signed-in account reads, administrators write. "
        "The change history, and CSV export and import.",
    },
    {
        "name": "changes",
        "description": "Every create, change and deletion of a record, in order: the change "
        "feed to poll, or to follow live (Server-Sent Events here; a WebSocket at "
        "`/v1/ws/employees`).",
    },
    {"name": "auth", "description": "Sign in, refresh, sign out; register an account."},
    {"name": "users", "description": "Your account; accounts and roles (administrators)."},
    {
        "name": "webhooks",
        "description": "Endpoints that receive every change, signed and retried (administrators).",
    },
    {"name": "health", "description": "Liveness and readiness probes."},
]

_DESCRIPTIONS = {
    400: "The request body could not be decoded (e.g. JSON that is not UTF-8).",
    401: "Missing, invalid or expired bearer token, or an inactive account.",
    403: "Authenticated, but not allowed: the account's role, or the API key's scopes, do not "
    "allow it.",
    404: "No such record.",
    409: "The record conflicts with an existing one (a unique key is taken).",
    412: "`If-Match` names a version the record no longer has; read it again (new `ETag`).",
    413: "The request body is larger than the server accepts (`MAX_BODY_BYTES`).",
    422: "The request's body, query, path or headers are invalid.",
    428: "`If-Match` is required for this write (`REQUIRE_IF_MATCH=true`).",
    429: "Too many failed sign-ins for this account; retry after the `Retry-After` seconds.",
    503: "The database is unavailable; retry after the `Retry-After` seconds.",
}


# What an error answer says wherever it comes from, shown as its example. The others (401, 403,
# 404, 409) word it for their operation and show ErrorMessage's example.
_EXAMPLE_DETAILS = {
    400: "There was an error parsing the body",
    412: "The record changed since you read it; fetch it again for the current ETag",
    413: "Request body too large",
    428: "This write needs an If-Match header with the record's current ETag",
    429: "Too many failed logins; retry later",
    503: "The database is unavailable; retry shortly.",
}


def _error_example(code: int) -> dict[str, Any]:
    return {"example": {"detail": _EXAMPLE_DETAILS[code]}}


def _header(description: str, kind: str = "string") -> dict[str, Any]:
    return {"description": description, "schema": {"type": kind}}


# The response headers a client is meant to read, declared where they are sent.
HEADERS: dict[str, dict[str, Any]] = {
    "ETag": _header("The record's version tag, for `If-Match` and `If-None-Match`."),
    "Location": _header("The path of the record just created."),
    "Idempotent-Replayed": _header("`true` when this is the stored answer to an earlier request."),
    "X-Total-Count": _header("How many rows match, over all pages.", "integer"),
    "X-Total-Count-Estimated": _header("`true` when X-Total-Count is the planner's estimate."),
    "Link": _header('RFC 8288 links to the other pages: `rel="first"`, `"prev"`, `"next"`.'),
    "Retry-After": _header("Seconds to wait before retrying.", "integer"),
    "WWW-Authenticate": _header("`Bearer`: the scheme to authenticate with."),
}
PAGE_HEADERS = ("X-Total-Count", "Link")
PAGE_ETAG = _header(
    "The page's weak tag: it changes when a row on the page, the count or the links change. "
    "Send it back as `If-None-Match` to poll the page."
)
_ERROR_HEADERS = {401: ("WWW-Authenticate",), 429: ("Retry-After",), 503: ("Retry-After",)}


def headers(*names: str) -> dict[str, dict[str, Any]]:
    return {name: HEADERS[name] for name in names}


def page_responses(*extra_headers: str) -> dict[int | str, dict[str, Any]]:
    """A list's 200 with the headers that describe its page and its tag, and its 304."""
    tag = {"ETag": PAGE_ETAG}
    return {
        200: {"headers": headers(*PAGE_HEADERS, *extra_headers) | tag},
        304: {
            "description": "Not modified: `If-None-Match` names the page's current `ETag`.",
            "headers": tag,
        },
    }


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    responses: dict[int | str, dict[str, Any]] = {}
    for code in (*codes, 503):
        model = ValidationErrorMessage if code == 422 else ErrorMessage
        responses[code] = {"model": model, "description": _DESCRIPTIONS[code]}
        if code in _EXAMPLE_DETAILS:
            responses[code]["content"] = {"application/json": _error_example(code)}
        if code in _ERROR_HEADERS:
            responses[code]["headers"] = headers(*_ERROR_HEADERS[code])
    return responses


# Every operation that reads a body can meet these before its own code runs: the body limit
# middleware (413) and FastAPI's parser (400). Both answer {"detail": str}.
BODY_ERRORS = (400, 413)


def document_body_errors(app: FastAPI) -> None:
    """When the schema is built: add the body errors to every operation with a request body,
    describe optional inputs as the server takes them (see `_not_null`), and list examples'
    fields in their models' order."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        _examples_in_field_order(schema)
        ref = {"$ref": f"#/components/schemas/{ErrorMessage.__name__}"}
        for path_item in schema["paths"].values():
            for operation in path_item.values():
                for parameter in operation.get("parameters", []):
                    if not parameter.get("required"):
                        parameter["schema"] = _not_null(parameter["schema"])
                if "requestBody" not in operation:
                    continue
                _optional_fields_not_null(schema, operation["requestBody"])
                for code in BODY_ERRORS:
                    operation["responses"].setdefault(
                        str(code),
                        {
                            "description": _DESCRIPTIONS[code],
                            "content": {"application/json": {"schema": ref} | _error_example(code)},
                        },
                    )
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _examples_in_field_order(schema: dict[str, Any]) -> None:
    # pydantic sorts an example's keys; both pages would show `emp_id` after `city`.
    for model in schema.get("components", {}).get("schemas", {}).values():
        if "examples" in model and "properties" in model:
            order = {name: index for index, name in enumerate(model["properties"])}
            model["examples"] = [_ordered(example, order) for example in model["examples"]]


def _ordered(example: Any, order: dict[str, int]) -> Any:
    if not isinstance(example, dict):
        return example
    return dict(sorted(example.items(), key=lambda item: order.get(item[0], len(order))))


def _optional_fields_not_null(schema: dict[str, Any], body: dict[str, Any]) -> None:
    for content in body.get("content", {}).values():
        name = content.get("schema", {}).get("$ref", "").rpartition("/")[2]
        model = schema.get("components", {}).get("schemas", {}).get(name, {})
        required = set(model.get("required", ()))
        for field, field_schema in model.get("properties", {}).items():
            if field not in required:
                model["properties"][field] = _not_null(field_schema)


def _not_null(field: dict[str, Any]) -> dict[str, Any]:
    """An optional input without its null alternative and null default: None stands for "not
    sent" inside, and the server refuses an explicit null, so a client generated from the
    schema must not offer one."""
    rest = {key: value for key, value in field.items() if key != "anyOf"}
    if rest.get("default", 0) is None:
        del rest["default"]
    if "anyOf" not in field:
        return rest
    options = [option for option in field["anyOf"] if option != {"type": "null"}]
    return options[0] | rest if len(options) == 1 else {"anyOf": options} | rest


RATE_LIMIT_HEADERS = {
    "RateLimit-Policy": _header(
        "The request quota closest to running out (draft-ietf-httpapi-ratelimit-headers): "
        '`"<name>";q=<requests>;w=<seconds>`.'
    ),
    "RateLimit": _header('What is left of it: `"<name>";r=<remaining>;t=<seconds to reset>`.'),
}
TOO_MANY_REQUESTS = (
    "Too many requests: a request limit is spent (see `RateLimit`); retry after the "
    "`Retry-After` seconds."
)


def document_rate_limits(app: FastAPI, counted: Callable[[str], bool]) -> None:
    """When the schema is built: the 429 and the `RateLimit` fields on every counted path."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        ref = {"$ref": f"#/components/schemas/{ErrorMessage.__name__}"}
        for path, path_item in schema["paths"].items():
            if not counted(path):
                continue
            for operation in path_item.values():
                responses = operation["responses"]
                limited = responses.setdefault(
                    "429",
                    {
                        "description": TOO_MANY_REQUESTS,
                        "content": {
                            "application/json": {
                                "schema": ref,
                                "example": {"detail": "Too many requests"},
                            }
                        },
                    },
                )
                if TOO_MANY_REQUESTS not in limited["description"]:
                    limited["description"] += f" Or: {TOO_MANY_REQUESTS}"
                limited.setdefault("headers", {}).update(headers("Retry-After"))
                for response in responses.values():
                    response.setdefault("headers", {}).update(RATE_LIMIT_HEADERS)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
