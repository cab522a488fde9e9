"""The schema promises what the server accepts and declares the headers a client reads."""

from typing import Any

import pytest

from app.main import create_app
from tests.test_openapi import operations

LISTS = ("/v1/employees/", "/v1/users/", "/v1/employees/{emp_id}/history")


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return create_app().openapi()


def offers_null(node: Any) -> bool:
    """Whether a JSON schema (or any part of it) admits null."""
    if isinstance(node, dict):
        if node.get("type") == "null" or node.get("default", 0) is None:
            return True
        return any(offers_null(value) for value in node.values())
    if isinstance(node, list):
        return any(offers_null(value) for value in node)
    return False


@pytest.mark.parametrize("model", ["EmployeeUpdate", "UserUpdate"])
def test_partial_updates_offer_optional_fields_never_null(schema, model):
    body = schema["components"]["schemas"][model]

    assert body.get("required", []) == []
    assert body["properties"]
    assert not offers_null(body)


def test_no_parameter_offers_null(schema):
    nullable = [
        (method, path, parameter["name"])
        for (method, path), operation in operations(schema).items()
        for parameter in operation.get("parameters", [])
        if offers_null(parameter["schema"])
    ]

    assert nullable == []


@pytest.mark.parametrize("field", ["emp_id", "city", "emp_dob"])
async def test_null_is_still_refused_as_the_schema_says(admin_user_client, make_employees, field):
    await make_employees({"emp_id": 1})

    response = await admin_user_client.patch("/employees/1", json={field: None})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", field]


@pytest.mark.parametrize(
    ("method", "path", "code", "names"),
    [
        (
            "get",
            "/v1/employees/",
            "200",
            {"X-Total-Count", "X-Total-Count-Estimated", "Link", "ETag"},
        ),
        ("get", "/v1/users/", "200", {"X-Total-Count", "Link", "ETag"}),
        ("get", "/v1/employees/{emp_id}/history", "200", {"X-Total-Count", "Link", "ETag"}),
        *(("get", path, "304", {"ETag"}) for path in LISTS),
        ("get", "/v1/employees/{emp_id}", "200", {"ETag"}),
        ("post", "/v1/employees/", "201", {"ETag", "Location", "Idempotent-Replayed"}),
        ("post", "/v1/employees/", "409", {"Retry-After"}),
        ("put", "/v1/employees/{emp_id}", "200", {"ETag"}),
        ("patch", "/v1/employees/{emp_id}", "200", {"ETag"}),
        ("post", "/v1/auth/token", "429", {"Retry-After"}),
        ("get", "/v1/employees/", "503", {"Retry-After"}),
        ("get", "/v1/employees/", "401", {"WWW-Authenticate"}),
    ],
)
def test_headers_a_client_reads_are_declared(schema, method, path, code, names):
    declared = operations(schema)[(method, path)]["responses"][code].get("headers", {})

    assert set(declared) >= names
    assert all(declared[name]["description"] for name in names)


async def test_declared_list_headers_are_the_ones_sent(normal_user_client, make_employees):
    await make_employees(*({"emp_id": n} for n in range(1, 4)))

    response = await normal_user_client.get("/employees/?limit=2")

    assert response.headers["X-Total-Count"] == "3"
    assert 'rel="next"' in response.headers["Link"]
    assert response.headers["ETag"].startswith('W/"')


@pytest.mark.parametrize("path", LISTS)
def test_lists_declare_if_none_match_and_their_304(schema, path):
    operation = operations(schema)[("get", path)]
    (header,) = [p for p in operation["parameters"] if p["in"] == "header"]

    assert header["name"] == "if-none-match"
    assert not header.get("required") and header["description"]
    assert (header["schema"]["type"], header["schema"]["maxLength"]) == ("string", 1000)
    assert operation["responses"]["304"]["description"]
    assert "content" not in operation["responses"]["304"]
