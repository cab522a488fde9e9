"""openapi/v1.json, the committed contract of version 1: the live schema breaks none of it, and
the file is the live schema as `make openapi` writes it."""

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import openapi_file  # noqa: E402
from schema_compat import breaking_changes  # noqa: E402

HINT = "run `make openapi` if the change is intended and additive"


@pytest.fixture(scope="module")
def live() -> dict[str, Any]:
    return openapi_file.live_schema()


def test_the_live_schema_keeps_the_committed_contract(live):
    breaks = breaking_changes(openapi_file.committed(), live)

    assert breaks == [], "\n".join(["The live schema breaks openapi/v1.json:", *breaks, HINT])


def test_the_committed_file_is_the_live_schema(live):
    # Also after an additive change: the file must record it, or removing it later would go
    # unnoticed (the check compares against the file).
    text = openapi_file.COMMITTED.read_text(encoding="utf-8")

    assert text == openapi_file.render(live), f"openapi/v1.json is out of date: {HINT}"


def test_the_schema_ignores_the_environment_and_dotenv(live, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("MAX_BODY_BYTES=10\nREQUIRE_IF_MATCH=true\n")
    monkeypatch.setenv("IMPORT_MAX_ROWS", "3")
    monkeypatch.setenv("EXACT_COUNT_LIMIT", "5")
    monkeypatch.setenv("JWT_SECRET_KEY", "another-secret-that-is-long-enough-0123456789")

    assert openapi_file.live_schema() == live


class TestMakeOpenapi:
    @pytest.fixture
    def target(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
        path = tmp_path / "openapi" / "v1.json"
        monkeypatch.setattr(openapi_file, "COMMITTED", path)
        return path

    def write(self, target: Path, schema: dict[str, Any]) -> None:
        target.parent.mkdir(exist_ok=True)
        target.write_text(json.dumps(schema), encoding="utf-8")

    def test_writes_the_file_when_there_is_none(self, target, live):
        assert openapi_file.main([]) == 0
        assert target.read_text(encoding="utf-8") == openapi_file.render(live)
        assert json.loads(target.read_text(encoding="utf-8")) == live

    def test_rewrites_it_after_an_additive_change(self, target, live):
        older = json.loads(openapi_file.render(live))
        del older["paths"]["/v1/users/me"]  # the live schema adds it back
        self.write(target, older)

        assert openapi_file.main(["--check"]) == 1
        assert openapi_file.main([]) == 0
        assert target.read_text(encoding="utf-8") == openapi_file.render(live)
        assert openapi_file.main(["--check"]) == 0

    def test_refuses_a_breaking_change_and_names_it(self, target, live, capsys):
        newer = json.loads(openapi_file.render(live))
        newer["paths"]["/v1/teams/"] = {"get": {"responses": {}}}  # gone from the live schema
        self.write(target, newer)
        before = target.read_text(encoding="utf-8")

        assert openapi_file.main([]) == 1
        assert openapi_file.main(["--check"]) == 1
        assert target.read_text(encoding="utf-8") == before
        error = capsys.readouterr().err
        assert "GET /v1/teams/: operation removed" in error
        assert "needs a new version" in error

    def test_writes_a_breaking_change_only_when_told_to(self, target, live):
        newer = json.loads(openapi_file.render(live))
        newer["paths"]["/v1/teams/"] = {"get": {"responses": {}}}
        self.write(target, newer)

        assert openapi_file.main(["--accept-breaking"]) == 0
        assert target.read_text(encoding="utf-8") == openapi_file.render(live)
