"""A Python client generated from /openapi.json signs in and manages employees on a real server.

The generator (openapi-python-client) needs an older typer than the app, so it lives in its own
virtualenv: `.venv/codegen` (`python -m venv .venv/codegen && .venv/codegen/bin/pip install -r
requirements-codegen.txt`), or any executable named by $OPENAPI_PYTHON_CLIENT or on PATH.
"""

import datetime
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from alembic import command

from app.main import create_app
from tests.conftest import SECRET
from tests.pg import ROOT, alembic_config
from tests.test_startup import free_port, server_env, uvicorn, wait_until_up

ADMIN = {"username": "boss", "password": "first-admin-password"}
PACKAGE = "employee_records_client"


def generator() -> str | None:
    candidates = [
        os.environ.get("OPENAPI_PYTHON_CLIENT", ""),
        str(ROOT / ".venv" / "codegen" / "bin" / "openapi-python-client"),
        shutil.which("openapi-python-client") or "",
    ]
    return next((path for path in candidates if path and os.access(path, os.X_OK)), None)


@contextmanager
def running_server(tmp_path: Path) -> Iterator[str]:
    """`uvicorn app.main:app` on a migrated SQLite file with a first admin; yields its base URL."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'served.db'}"
    command.upgrade(alembic_config(url), "head")
    port = free_port()
    env = server_env(
        DATABASE_URL=url,
        JWT_SECRET_KEY=SECRET,
        FIRST_ADMIN_USERNAME=ADMIN["username"],
        FIRST_ADMIN_PASSWORD=ADMIN["password"],
    )
    server = uvicorn(port, tmp_path, env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base, server, tmp_path / "server.log")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=15)


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[ModuleType]:
    tool = generator()
    if tool is None:
        pytest.skip(
            "openapi-python-client is not installed: create .venv/codegen from "
            "requirements-codegen.txt or set OPENAPI_PYTHON_CLIENT"
        )
    (tmp_path / "schema.json").write_text(json.dumps(create_app().openapi()))
    # The generator formats its output with ruff; the project's ruff is next to this Python.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    result = subprocess.run(
        [tool, "generate", "--path", "schema.json", "--output-path", PACKAGE, "--meta", "none"],
        cwd=tmp_path,
        env=os.environ | {"PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def api(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


def sign_in(base: str) -> Any:
    """Log in through the generated client; the first admin appears just after start-up."""
    login, models, client = api("api.auth.login"), api("models"), api("client")
    anonymous = client.Client(base_url=base, raise_on_unexpected_status=True)
    body = models.BodyLogin(username=ADMIN["username"], password=ADMIN["password"])
    deadline = time.monotonic() + 10
    while True:
        answer = login.sync_detailed(client=anonymous, body=body)
        if answer.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert answer.status_code == 200, answer.content
    return answer.parsed


def test_generated_client_logs_in_creates_lists_and_deletes(generated, tmp_path):
    models, client = api("models"), api("client")
    create, list_all = api("api.employees.create_employee"), api("api.employees.list_employees")
    delete = api("api.employees.delete_employee")
    with running_server(tmp_path) as base:
        token = sign_in(base)
        assert isinstance(token, models.TokenResponse) and token.token_type == "bearer"
        admin = client.AuthenticatedClient(base_url=base, token=token.access_token)

        new = models.EmployeeCreate(
            emp_id=1001,
            emp_name="Ada Lovelace",
            city="London",
            country="United Kingdom",
            emp_dob=datetime.date(1985, 12, 10),
        )
        created = create.sync(client=admin, body=new)
        assert isinstance(created, models.EmployeeRead)
        assert (created.emp_id, created.emp_name, created.emp_dob) == (
            1001,
            "Ada Lovelace",
            datetime.date(1985, 12, 10),
        )
        listed = list_all.sync(client=admin)
        assert [(row.emp_id, row.city) for row in listed] == [(1001, "London")]

        deleted = delete.sync_detailed(emp_id=1001, client=admin)
        assert deleted.status_code == 204
        assert list_all.sync(client=admin) == []
        missing = delete.sync(emp_id=1001, client=admin)
        assert isinstance(missing, models.ErrorMessage) and "1001" in missing.detail


def test_generated_partial_update_does_not_offer_null(generated):
    """A client generated from the schema may leave a field out of a PATCH, never send null."""
    hints = typing.get_type_hints(api("models").EmployeeUpdate)

    for name in ("emp_id", "emp_name", "city", "country", "emp_dob"):
        assert type(None) not in typing.get_args(hints[name]), (name, hints[name])
    assert api("models").EmployeeUpdate(city="Paris").to_dict() == {"city": "Paris"}


def test_generated_client_reads_a_record_without_its_birth_date(generated):
    """EMPLOYEE_DOB_VISIBLE_TO may leave `emp_dob` out: a generated client takes such a record,
    and one carrying it, and gives the account's role."""
    models = api("models")
    record = {
        "id": "7d0f4c1e-4b0a-4a53-9a55-1f1ad6f6f1b1",
        "emp_id": 4242,
        "emp_name": "Ada Lovelace",
        "city": "London",
        "country": "United Kingdom",
        "created_at": "2026-01-05T09:30:00Z",
        "updated_at": "2026-01-05T09:30:00Z",
        "version": 1,
    }

    hidden = models.EmployeeRead.from_dict(record)
    shown = models.EmployeeRead.from_dict(record | {"emp_dob": "1985-12-10"})

    assert isinstance(hidden.emp_dob, api("types").Unset)
    assert "emp_dob" not in hidden.to_dict() and hidden.emp_name == "Ada Lovelace"
    assert shown.emp_dob == datetime.date(1985, 12, 10)
    account = models.UserRead.from_dict(
        {
            "id": "3f2c8e4a-9b1d-4c6e-8f0a-2d5b7c9e1a34",
            "username": "jane.doe",
            "role": "auditor",
            "is_admin": False,
            "is_active": True,
            "created_at": "2026-01-15T09:30:00Z",
        }
    )
    assert account.role == models.Role.AUDITOR
