"""The configuration table of docs/configuration.md is generated from the settings class and kept
in sync; every setting is documented in `.env.example`."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from app.core.config import PROJECT_DIR, Settings

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "config_table.py"
PAGE = ROOT / "docs" / "configuration.md"
sys.path.insert(0, str(SCRIPT.parent))
import config_table  # noqa: E402

RERUN = "run `python scripts/config_table.py`"


def table_rows() -> dict[str, list[str]]:
    """Variable -> [default, meaning], from the generated table."""
    rows = {}
    for line in config_table.render().splitlines():
        match = re.match(r"\| `([A-Z0-9_]+)` \| (.*?) \| (.*) \|$", line)
        if match:
            rows[match.group(1)] = [match.group(2), match.group(3)]
    return rows


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestConfigurationPage:
    def test_the_page_matches_the_settings_class(self) -> None:
        page = PAGE.read_text(encoding="utf-8")
        assert config_table.updated(page) == page, (
            f"docs/configuration.md's table is out of date: {RERUN}"
        )

    def test_the_readme_points_to_the_page_and_holds_no_table(self) -> None:
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        assert config_table.START not in readme
        assert "docs/configuration.md" in readme

    def test_every_setting_has_a_row_with_a_description(self) -> None:
        rows = table_rows()
        assert list(rows) == [name.upper() for name in Settings.model_fields]
        for name, field in Settings.model_fields.items():
            assert field.description, f"Settings.{name} has no Field(description=...)"
            assert rows[name.upper()][1].startswith(field.description.rstrip(".")[:20])

    def test_check_mode_fails_on_a_stale_table_and_the_script_fixes_it(
        self, tmp_path: Path
    ) -> None:
        page = tmp_path / "configuration.md"
        shutil.copy(PAGE, page)
        page.write_text(page.read_text().replace("| `JWT_ALGORITHM` |", "| `JWT_ALGO` |"))

        stale = run_script("--check", "--page", str(page))
        assert stale.returncode == 1
        assert RERUN in stale.stderr

        assert run_script("--page", str(page)).returncode == 0
        assert run_script("--check", "--page", str(page)).returncode == 0
        assert page.read_text() == PAGE.read_text()


class TestRendering:
    def test_secrets_show_required_or_unset_never_a_value(self) -> None:
        rows = table_rows()
        assert rows["JWT_SECRET_KEY"][0] == "required"
        assert rows["FIRST_ADMIN_PASSWORD"][0] == "unset"
        with_default = FieldInfo.from_annotated_attribute(SecretStr, SecretStr("hunter2-secret"))
        assert config_table.default_of(with_default) == "set"

    def test_defaults_depend_on_no_checkout_folder(self) -> None:
        rendered = config_table.render()
        assert str(PROJECT_DIR) not in rendered
        assert table_rows()["DATABASE_URL"][0] == (
            "`sqlite+aiosqlite:///<project folder>/employees.db`"
        )

    @pytest.mark.parametrize(
        ("variable", "default", "allowed"),
        [
            ("ACCESS_TOKEN_EXPIRE_MINUTES", "`30`", "(`1`..`1440`)"),
            ("DB_POOL_TIMEOUT", "`10`", "(above `0`, up to `300`)"),
            ("JWT_ALGORITHM", "`HS256`", "(one of `HS256`, `HS384`, `HS512`)"),
            ("TRUSTED_HOSTS", "`*`", ""),
            ("CORS_ORIGINS", "empty", ""),
            ("SQL_ECHO", "`false`", ""),
        ],
    )
    def test_defaults_and_allowed_values(self, variable: str, default: str, allowed: str) -> None:
        row = table_rows()[variable]
        assert row[0] == default
        assert allowed in row[1]


class TestEnvExample:
    def test_every_setting_is_documented_in_env_example(self) -> None:
        lines = (ROOT / ".env.example").read_text().splitlines()
        for name in Settings.model_fields:
            variable = name.upper()
            index = next(
                (i for i, line in enumerate(lines) if line.startswith(f"{variable}=")), None
            )
            assert index is not None, f"{variable} is missing from .env.example"
            # A comment documents it, or the group of variables it belongs to.
            while index > 0 and re.match(r"[A-Z0-9_]+=", lines[index - 1]):
                index -= 1
            assert index > 0 and lines[index - 1].startswith("#"), f"{variable} is undocumented"
