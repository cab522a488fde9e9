"""The compatibility check itself: each kind of breaking change, made to a copy of the committed
schema, is reported with a line naming the operation and the field; additive changes are not."""

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from schema_compat import breaking_changes  # noqa: E402

Schema = dict[str, Any]
ONE = "/v1/employees/{emp_id}"
LIST = "/v1/employees/"
CREATE = "POST /v1/employees/: request body (application/json)"
HISTORY = f"GET {ONE}/history: response 200 (application/json)"


@pytest.fixture(scope="module")
def committed() -> Schema:
    schema: Schema = json.loads((ROOT / "openapi" / "v1.json").read_text(encoding="utf-8"))
    return schema


def model(schema: Schema, name: str) -> Schema:
    found: Schema = schema["components"]["schemas"][name]
    return found


def parameter(schema: Schema, path: str, method: str, name: str) -> Schema:
    operation = schema["paths"][path][method]
    return next(p for p in operation["parameters"] if p["name"] == name)


def drop_field(schema: Schema, name: str, field: str) -> None:
    body = model(schema, name)
    del body["properties"][field]
    body["required"] = [kept for kept in body.get("required", []) if kept != field]


# Each change made to the new copy; the line it must be reported with.
BREAKS: list[tuple[str, Callable[[Schema], None], str]] = [
    (
        "operation removed",
        lambda s: s["paths"][ONE].pop("delete"),
        f"DELETE {ONE}: operation removed",
    ),
    (
        "response field removed",
        lambda s: drop_field(s, "EmployeeRead", "city"),
        f"GET {ONE}: response 200 (application/json): field `city` removed",
    ),
    (
        "response field removed in a list's items",
        lambda s: drop_field(s, "EmployeeRead", "city"),
        f"GET {LIST}: response 200 (application/json): field `[].city` removed",
    ),
    (
        "response field removed behind a $ref",
        lambda s: model(s, "ReadinessChecks")["properties"].pop("database"),
        "GET /health/ready: response 200 (application/json): field `checks.database` removed",
    ),
    (
        "response field no longer always present",
        lambda s: model(s, "EmployeeRead")["required"].remove("version"),
        f"GET {ONE}: response 200 (application/json): field `version` is no longer always present",
    ),
    (
        "request enum value removed",
        lambda s: model(s, "SortField")["enum"].remove("city"),
        f'GET {LIST}: query parameter `sort_by`: enum value "city" removed',
    ),
    (
        "response enum value removed",
        lambda s: model(s, "AuditAction")["enum"].remove("delete"),
        f'{HISTORY}: field `[].action`: enum value "delete" removed',
    ),
    (
        "response enum value added",
        lambda s: model(s, "AuditAction")["enum"].append("restore"),
        f'{HISTORY}: field `[].action`: enum value "restore" added',
    ),
    (
        "request type changed, string to integer",
        lambda s: model(s, "EmployeeCreate")["properties"]["city"].update(type="integer"),
        f"{CREATE}: field `city`: type string no longer accepted",
    ),
    (
        "request maxLength lowered",
        lambda s: model(s, "EmployeeCreate")["properties"]["emp_name"].update(maxLength=50),
        f"{CREATE}: field `emp_name`: maxLength changed from 100 to 50",
    ),
    (
        "request minLength raised",
        lambda s: model(s, "EmployeeCreate")["properties"]["emp_name"].update(minLength=3),
        f"{CREATE}: field `emp_name`: minLength changed from 1 to 3",
    ),
    (
        "parameter minimum raised",
        lambda s: parameter(s, LIST, "get", "limit")["schema"].update(minimum=5),
        f"GET {LIST}: query parameter `limit`: minimum changed from 1 to 5",
    ),
    (
        "parameter maximum lowered",
        lambda s: parameter(s, LIST, "get", "limit")["schema"].update(maximum=50),
        f"GET {LIST}: query parameter `limit`: maximum changed from 100 to 50",
    ),
    (
        "request pattern added",
        lambda s: model(s, "EmployeeCreate")["properties"]["city"].update(pattern="^[A-Z]"),
        f"{CREATE}: field `city`: pattern changed from 'none' to '^[A-Z]'",
    ),
    (
        "response type widened to null",
        lambda s: model(s, "EmployeeRead")["properties"].update(
            city={"anyOf": [{"type": "string"}, {"type": "null"}]}
        ),
        f"GET {ONE}: response 200 (application/json): field `city`: may now be null",
    ),
    (
        "parameter newly required",
        lambda s: parameter(s, LIST, "get", "limit").update(required=True),
        f"GET {LIST}: query parameter `limit` is now required",
    ),
    (
        "required parameter added",
        lambda s: s["paths"][LIST]["get"]["parameters"].append(
            {"name": "X-Tenant", "in": "header", "required": True, "schema": {"type": "string"}}
        ),
        f"GET {LIST}: required header parameter `x-tenant` added",
    ),
    (
        "parameter removed",
        lambda s: s["paths"][LIST]["get"].update(
            parameters=[p for p in s["paths"][LIST]["get"]["parameters"] if p["name"] != "city"]
        ),
        f"GET {LIST}: query parameter `city` removed",
    ),
    (
        "request field newly required",
        lambda s: model(s, "EmployeeUpdate").update(required=["city"]),
        f"PATCH {ONE}: request body (application/json): field `city` is now required",
    ),
    (
        "required request field added",
        lambda s: (
            model(s, "EmployeeCreate")["properties"].update(team={"type": "string"}),
            model(s, "EmployeeCreate")["required"].append("team"),
        ),
        f"{CREATE}: field `team` is now required (a new field)",
    ),
    (
        "request field removed",
        lambda s: drop_field(s, "EmployeeUpdate", "country"),
        f"PATCH {ONE}: request body (application/json): field `country` removed",
    ),
    (
        "documented status code removed",
        lambda s: s["paths"][ONE]["get"]["responses"].pop("404"),
        f"GET {ONE}: response 404 removed",
    ),
    (
        "response header removed",
        lambda s: s["paths"][ONE]["get"]["responses"]["200"].pop("headers"),
        f"GET {ONE}: response 200: header `ETag` removed",
    ),
    (
        "authentication newly required",
        lambda s: s["paths"]["/health/live"]["get"].update(security=[{"OAuth2PasswordBearer": []}]),
        "GET /health/live: now requires authentication",
    ),
]


@pytest.mark.parametrize(
    ("change", "expected"), [b[1:] for b in BREAKS], ids=[b[0] for b in BREAKS]
)
def test_a_breaking_change_is_reported(committed, change, expected):
    new = copy.deepcopy(committed)
    change(new)

    assert expected in breaking_changes(committed, new)


def test_a_type_removed_from_an_input_anyof_is_reported(committed):
    old = copy.deepcopy(committed)
    fields = model(old, "EmployeeCreate")["properties"]
    fields["emp_id"] = {"anyOf": [fields["emp_id"], {"type": "string"}]}

    # Both operations that take the model are named.
    assert breaking_changes(old, committed) == [
        f"{CREATE}: field `emp_id`: type string no longer accepted",
        f"PUT {ONE}: request body (application/json): "
        "field `emp_id`: type string no longer accepted",
    ]


def test_an_unchanged_schema_has_no_breaks(committed):
    assert breaking_changes(committed, copy.deepcopy(committed)) == []


ADDITIVE: list[tuple[str, Callable[[Schema], None]]] = [
    (
        "optional request field",
        lambda s: model(s, "EmployeeUpdate")["properties"].update(team={"type": "string"}),
    ),
    (
        "optional response field",
        lambda s: model(s, "EmployeeRead")["properties"].update(team={"type": "string"}),
    ),
    ("operation", lambda s: s["paths"].update({"/v1/teams/": {"get": {"responses": {}}}})),
    ("method on a path", lambda s: s["paths"]["/v1/users/me"].update(delete={"responses": {}})),
    (
        "optional parameter",
        lambda s: s["paths"][LIST]["get"]["parameters"].append(
            {"name": "team", "in": "query", "required": False, "schema": {"type": "string"}}
        ),
    ),
    ("request enum value", lambda s: model(s, "SortField")["enum"].append("created_at")),
    (
        "request bound loosened",
        lambda s: model(s, "EmployeeCreate")["properties"]["emp_name"].update(maxLength=200),
    ),
    ("status code", lambda s: s["paths"][ONE]["get"]["responses"].update({"410": {}})),
    (
        "request type widened",
        lambda s: model(s, "EmployeeCreate")["properties"].update(
            emp_id={"anyOf": [{"type": "integer"}, {"type": "string"}]}
        ),
    ),
    (
        "response type narrowed",
        lambda s: model(s, "AuditEntryRead")["properties"].update(
            actor_username={"type": "string"}
        ),
    ),
    ("description", lambda s: s["paths"][ONE]["get"].update(description="Another text.")),
]


@pytest.mark.parametrize("change", [a[1] for a in ADDITIVE], ids=[a[0] for a in ADDITIVE])
def test_an_additive_change_passes(committed, change):
    new = copy.deepcopy(committed)
    change(new)

    assert new != committed
    assert breaking_changes(committed, new) == []


def test_a_recursive_model_is_compared_once_per_level():
    def document(fields: dict[str, Any]) -> Schema:
        node = {"type": "object", "properties": fields}
        response = {"content": {"application/json": {"schema": {"$ref": "#/$defs/Node"}}}}
        return {
            "$defs": {"Node": node},
            "paths": {"/tree": {"get": {"responses": {"200": response}}}},
        }

    children = {"type": "array", "items": {"$ref": "#/$defs/Node"}}
    old = document({"name": {"type": "string"}, "children": children})
    new = document({"children": children})

    assert breaking_changes(old, new) == [
        "GET /tree: response 200 (application/json): field `name` removed"
    ]


def test_the_command_line_prints_each_break_and_fails(committed, tmp_path):
    new = copy.deepcopy(committed)
    new["paths"][ONE].pop("put")
    (tmp_path / "old.json").write_text(json.dumps(committed))
    (tmp_path / "new.json").write_text(json.dumps(new))
    script = ROOT / "scripts" / "schema_compat.py"

    def run(*names: str) -> subprocess.CompletedProcess[str]:
        paths = [str(tmp_path / name) for name in names]
        return subprocess.run(
            [sys.executable, str(script), *paths], capture_output=True, text=True, timeout=60
        )

    broken, same = run("old.json", "new.json"), run("old.json", "old.json")
    assert (broken.returncode, broken.stdout) == (1, f"PUT {ONE}: operation removed\n")
    assert (same.returncode, same.stdout) == (0, "")
