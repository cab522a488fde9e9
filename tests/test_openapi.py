"""The API describes itself: Swagger UI signs in, and every operation documents its answers."""

import re
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient

from app.core.config import get_settings
from app.main import create_app
from tests.pg import ROOT

OPERATIONS = {
    ("post", "/v1/auth/token"): {"400", "401", "413", "422", "429"},
    ("post", "/v1/auth/register"): {"400", "409", "413", "422"},
    ("get", "/v1/users/me"): {"401"},
    ("get", "/v1/users/"): {"304", "401", "403", "422"},
    ("get", "/v1/employees/changes"): {"401", "403", "422"},
    ("get", "/v1/employees/events"): {"401", "403", "422", "429"},
    ("get", "/v1/employees/"): {"304", "401", "403", "422"},
    ("post", "/v1/employees/"): {"400", "401", "403", "409", "413", "422"},
    ("get", "/v1/employees/{emp_id}"): {"304", "401", "404", "422"},
    ("put", "/v1/employees/{emp_id}"): {
        "400",
        "401",
        "403",
        "404",
        "409",
        "412",
        "413",
        "422",
        "428",
    },
    ("patch", "/v1/employees/{emp_id}"): {
        *("400", "401", "403", "404", "409", "412", "413", "422", "428"),
    },
    ("delete", "/v1/employees/{emp_id}"): {"401", "403", "404", "409", "412", "422", "428"},
    ("get", "/v1/employees/{emp_id}/history"): {"304", "401", "403", "404", "422"},
    ("get", "/v1/employees/export.csv"): {"401", "403", "422"},
    ("post", "/v1/employees/import"): {"400", "401", "403", "409", "413", "422"},
    ("get", "/health/live"): set(),
    ("get", "/health/ready"): set(),
    ("post", "/v1/auth/refresh"): {"400", "401", "413", "422"},
    ("post", "/v1/auth/logout"): {"400", "413", "422"},
    ("post", "/v1/auth/logout-all"): {"401"},
    ("post", "/v1/users/me/password"): {"400", "401", "403", "413", "422"},
    ("get", "/v1/users/{user_id}"): {"401", "403", "404", "422"},
    ("patch", "/v1/users/{user_id}"): {"400", "401", "403", "404", "409", "413", "422"},
    ("delete", "/v1/users/{user_id}"): {"401", "403", "404", "409"},
    ("get", "/v1/users/{user_id}/history"): {"304", "401", "403", "404", "422"},
    ("post", "/v1/users/me/api-keys"): {"400", "401", "403", "409", "413", "422"},
    ("get", "/v1/users/me/api-keys"): {"401", "403"},
    ("delete", "/v1/users/me/api-keys/{key_id}"): {"401", "403", "404", "422"},
    ("get", "/v1/users/{user_id}/api-keys"): {"401", "403", "404", "422"},
    ("delete", "/v1/users/{user_id}/api-keys/{key_id}"): {"401", "403", "404", "422"},
    ("post", "/v1/webhooks/"): {"400", "401", "403", "409", "413", "422"},
    ("get", "/v1/webhooks/"): {"401", "403", "422"},
    ("get", "/v1/webhooks/{endpoint_id}"): {"401", "403", "404", "422"},
    ("patch", "/v1/webhooks/{endpoint_id}"): {"400", "401", "403", "404", "413", "422"},
    ("delete", "/v1/webhooks/{endpoint_id}"): {"401", "403", "404", "422"},
    ("post", "/v1/webhooks/{endpoint_id}/rotate-secret"): {"401", "403", "404", "422"},
    ("get", "/v1/webhooks/{endpoint_id}/deliveries"): {"401", "403", "404", "422"},
    ("post", "/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/retry"): {
        *("401", "403", "404", "409", "422"),
    },
}
PUBLIC = {("post", "/v1/auth/token"), ("post", "/v1/auth/register")} | {
    ("post", "/v1/auth/refresh"),
    ("post", "/v1/auth/logout"),
    ("get", "/health/live"),
    ("get", "/health/ready"),
}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return create_app().openapi()


def operations(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m, path): op for path, item in schema["paths"].items() for m, op in item.items()}


def test_every_route_is_documented_once(schema):
    assert set(operations(schema)) == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), sorted(OPERATIONS))
def test_operation_documents_its_errors_and_purpose(schema, method, path):
    operation = operations(schema)[(method, path)]
    assert operation["description"].strip()
    assert operation["operationId"].replace("_", "").isalpha()
    # Liveness never touches the database, so it has no 503 to document.
    database = set() if path == "/health/live" else {"503"}
    assert OPERATIONS[(method, path)] | database <= set(operation["responses"])
    for code, response in operation["responses"].items():
        if code.startswith(("4", "5")):
            ref = response["content"]["application/json"]["schema"]["$ref"]
            body = schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]
            assert body["required"] == ["detail"], code


def test_only_operations_with_a_body_document_body_errors(schema):
    for key, operation in operations(schema).items():
        has_body = "requestBody" in operation
        assert ({"400", "413"} <= set(operation["responses"])) is has_body, key


async def test_body_errors_answer_the_documented_shape():
    limit = get_settings().max_body_bytes
    json_body = {"Content-Type": "application/json"}
    async with AsyncClient(transport=ASGITransport(create_app()), base_url="http://t") as client:
        undecodable = await client.post(
            "/v1/auth/register", content=b'{"username": "\xff"}', headers=json_body
        )
        too_large = await client.post(
            "/v1/auth/register", content=b" " * (limit + 1), headers=json_body
        )
    assert undecodable.status_code == 400
    assert undecodable.json() == {"detail": "There was an error parsing the body"}
    assert too_large.status_code == 413
    assert too_large.json() == {"detail": "Request body too large"}
    # Both pages show what the server really says.
    responses = create_app().openapi()["paths"]["/v1/auth/register"]["post"]["responses"]
    for answer in (undecodable, too_large):
        media = responses[str(answer.status_code)]["content"]["application/json"]
        assert media["example"] == answer.json()


def test_operation_ids_are_unique(schema):
    ids = [op["operationId"] for op in operations(schema).values()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    "name",
    [
        "EmployeeCreate",
        "EmployeeUpdate",
        "UserCreate",
        "EmployeeRead",
        "TokenResponse",
        "RefreshRequest",
        "PasswordChange",
        "UserUpdate",
        "ApiKeyCreate",
        "ApiKeyRead",
        "ApiKeyCreated",
    ],
)
def test_bodies_carry_examples(schema, name):
    assert schema["components"]["schemas"][name]["examples"]


def test_examples_list_fields_in_the_models_order(schema):
    for name in ("EmployeeCreate", "EmployeeRead"):
        model = schema["components"]["schemas"][name]
        (example,) = model["examples"]
        assert list(example) == [field for field in model["properties"] if field in example]
        assert list(example)[0:2] in (["emp_id", "emp_name"], ["id", "emp_id"])


def test_example_emp_id_is_not_one_the_guides_create():
    # Tried out after the README's quickstart, an example taking its emp_id would answer 409.
    guides = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    used = {int(n) for path in guides for n in re.findall(r'"emp_id": (\d+)', path.read_text())}
    schema = create_app().openapi()
    (example,) = schema["components"]["schemas"]["EmployeeCreate"]["examples"]
    assert used and example["emp_id"] not in used
    csv_example = schema["paths"]["/v1/employees/export.csv"]["get"]["responses"]["200"]["content"]
    (row,) = csv_example["text/csv"]["example"].splitlines()[1:]
    assert int(row.split(",")[0]) == example["emp_id"]


def test_login_form_has_examples(schema):
    form = schema["components"]["schemas"]["Body_login"]["properties"]
    assert form["username"]["examples"] and form["password"]["examples"]


def test_authorize_button_uses_the_password_flow(schema):
    (scheme,) = schema["components"]["securitySchemes"].values()
    assert scheme["flows"]["password"]["tokenUrl"] == "/v1/auth/token"
    protected = {key for key, op in operations(schema).items() if op.get("security")}
    assert protected == set(OPERATIONS) - PUBLIC


async def test_swagger_ui_page_keeps_authorization():
    async with AsyncClient(transport=ASGITransport(create_app()), base_url="http://t") as client:
        page = await client.get("/docs")
        root = await client.get("/")
    assert page.status_code == 200
    assert '"persistAuthorization": true' in page.text
    assert "/openapi.json" in page.text
    assert root.status_code == 307 and root.headers["location"] == "/docs"


def schema_of(schema: dict[str, Any], media: dict[str, Any]) -> dict[str, Any]:
    body = media.get("schema", {})
    body = body.get("items", body) if body.get("type") == "array" else body
    if "$ref" in body:
        return dict(schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]])
    return dict(body)


def has_examples(schema: dict[str, Any], media: dict[str, Any]) -> bool:
    if media.get("example") or media.get("examples"):
        return True
    body = schema_of(schema, media)
    if body.get("examples"):
        return True
    # A form: every field the caller must fill in shows an example; an uploaded file cannot.
    required = [body["properties"][name] for name in body.get("required", [])]
    return bool(required) and all(
        field.get("examples") or field.get("contentMediaType") == "application/octet-stream"
        for field in required
    )


def main_responses() -> list[tuple[str, str, str]]:
    return sorted(
        (method, path, code)
        for (method, path), operation in operations(create_app().openapi()).items()
        for code, response in operation["responses"].items()
        if code.startswith("2") and response.get("content")
    )


def request_bodies() -> list[tuple[str, str]]:
    return sorted(
        key
        for key, operation in operations(create_app().openapi()).items()
        if "requestBody" in operation
    )


@pytest.mark.parametrize(("method", "path"), request_bodies())
def test_request_body_shows_an_example(schema, method, path):
    for media in operations(schema)[(method, path)]["requestBody"]["content"].values():
        assert has_examples(schema, media), media


@pytest.mark.parametrize(("method", "path", "code"), main_responses())
def test_main_response_shows_an_example(schema, method, path, code):
    content = operations(schema)[(method, path)]["responses"][code]["content"]
    for media in content.values():
        assert has_examples(schema, media), media
