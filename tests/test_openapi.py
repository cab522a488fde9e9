"""The API describes itself: Swagger UI signs in, and every operation documents its answers."""

from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient

from app.main import create_app

OPERATIONS = {
    ("post", "/auth/token"): {"401", "422"},
    ("post", "/auth/register"): {"409", "422"},
    ("get", "/users/me"): {"401"},
    ("get", "/users/"): {"401", "403", "422"},
    ("get", "/employees/"): {"401", "422"},
    ("post", "/employees/"): {"401", "403", "409", "422"},
    ("get", "/employees/{emp_id}"): {"401", "404", "422"},
    ("put", "/employees/{emp_id}"): {"401", "403", "404", "409", "422"},
    ("patch", "/employees/{emp_id}"): {"401", "403", "404", "409", "422"},
    ("delete", "/employees/{emp_id}"): {"401", "403", "404", "422"},
    ("post", "/auth/refresh"): {"401", "422"},
    ("post", "/auth/logout"): {"422"},
    ("post", "/auth/logout-all"): {"401"},
    ("post", "/users/me/password"): {"401", "403", "422"},
    ("get", "/users/{user_id}"): {"401", "403", "404", "422"},
    ("patch", "/users/{user_id}"): {"401", "403", "404", "409", "422"},
    ("delete", "/users/{user_id}"): {"401", "403", "404", "409"},
}
PUBLIC = {("post", "/auth/token"), ("post", "/auth/register")} | {
    ("post", "/auth/refresh"),
    ("post", "/auth/logout"),
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
    assert OPERATIONS[(method, path)] | {"503"} <= set(operation["responses"])
    for code, response in operation["responses"].items():
        if code.startswith(("4", "5")):
            ref = response["content"]["application/json"]["schema"]["$ref"]
            body = schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]
            assert body["required"] == ["detail"], code


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
    ],
)
def test_bodies_carry_examples(schema, name):
    assert schema["components"]["schemas"][name]["examples"]


def test_login_form_has_examples(schema):
    form = schema["components"]["schemas"]["Body_login"]["properties"]
    assert form["username"]["examples"] and form["password"]["examples"]


def test_authorize_button_uses_the_password_flow(schema):
    (scheme,) = schema["components"]["securitySchemes"].values()
    assert scheme["flows"]["password"]["tokenUrl"] == "/auth/token"
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
