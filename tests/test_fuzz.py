"""Property-based fuzzing of every documented operation (schemathesis), as a user, an auditor
and an admin.

Whatever the generated request, the answer is never a 5xx and always matches the documentation:
a documented status code, its content type and its body schema. The schema documents the /v1
paths (the root paths are the same operations), so those are the ones called. `FUZZ_EXAMPLES`
sets the number of examples per operation (`make fuzz` runs 100; the default keeps `make test`
fast).
"""

import os
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from httpx import ASGITransport, AsyncClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import text

from app.accounts.models import User
from app.core.config import Settings
from app.health.checks import migration_heads
from app.main import create_app

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
BASE_URL = "http://test"

# The live event stream answers 200 with a body that never ends: its refusals (401, 403, 422,
# 429) and its frames are tested in tests/test_streams.py.
LIVE_STREAMS = "stream_employee_events"
schema = schemathesis.openapi.from_dict(create_app().openapi()).exclude(operation_id=LIVE_STREAMS)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Keeps the backend's database; the login limits would otherwise turn most sign-ins into 429.
    # Birth dates hidden from users: their answers leave emp_dob out, as the schema allows.
    unlimited = "1000000/minute"
    return settings.model_copy(
        update={
            "login_limit_per_client": unlimited,
            "login_limit_per_username": unlimited,
            "employee_dob_visible_to": "auditors",
        }
    )


@pytest.fixture(params=["user", "auditor", "admin"])
def caller(request: pytest.FixtureRequest, token_for: Callable[[User], str]) -> dict[str, str]:
    """Every operation is fuzzed as a regular user, an auditor and an administrator."""
    fixture = {"admin": "admin_user", "auditor": "auditor_user", "user": "normal_user"}
    user = request.getfixturevalue(fixture[request.param])
    return {"Authorization": f"Bearer {token_for(user)}"}


@pytest.fixture
async def stamped(backend: str, sessionmaker: Any) -> None:
    """The in-memory SQLite schema comes from the models, not from Alembic: record the head
    revision as Alembic would, so /health/ready answers as on a migrated database."""
    if backend != "sqlite":
        return
    async with sessionmaker() as session:
        await session.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32))"))
        for head in migration_heads():
            await session.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": head})
        await session.commit()


def test_the_fuzzed_operations_are_the_documented_v1_paths():
    paths = {result.ok().path for result in schema.get_all_operations()}
    assert "/v1/employees/{emp_id}" in paths
    assert all(path.startswith(("/v1/", "/health/")) for path in paths), paths


@schema.parametrize()
@hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_operation_answers_as_documented(
    case: Any, app: Any, caller: dict[str, str], stamped: None
):
    kwargs = case.as_transport_kwargs(base_url=BASE_URL, headers=caller)
    # The kwargs are shaped for `requests`; httpx wants raw bytes as `content` and no cookies here.
    kwargs.pop("cookies", None)
    if isinstance(kwargs.get("data"), bytes | str):
        kwargs["content"] = kwargs.pop("data")
    if kwargs.get("files"):
        kwargs["files"] = _file_parts(kwargs["files"])
    headers = kwargs.get("headers")
    if headers:
        # Generated header values may hold any character; on the wire they are bytes.
        kwargs["headers"] = {name: _header_bytes(value) for name, value in headers.items()}
    async with AsyncClient(transport=ASGITransport(app=app), base_url=BASE_URL) as client:
        response = await client.request(**kwargs)
    # A multipart upload is sent as a stream; schemathesis reads the request body back.
    response.request.read()
    case.validate_response(response, checks=CHECKS, headers=headers)


def _header_bytes(value: str) -> bytes:
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def _file_parts(files: Any) -> list[tuple[str, Any]]:
    """Multipart parts as httpx takes them: generated file contents may be any JSON value."""
    items = files.items() if isinstance(files, dict) else files
    parts = []
    for name, value in items:
        if isinstance(value, tuple):
            filename, content, *rest = value
            value = (filename, _as_bytes(content), *rest)
        else:
            value = _as_bytes(value)
        parts.append((name, value))
    return parts


def _as_bytes(content: Any) -> Any:
    if isinstance(content, bytes) or hasattr(content, "read"):
        return content
    return str(content).encode("utf-8", "surrogatepass")
