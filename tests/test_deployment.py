"""Deployment files: the compose stack validates, waits for a healthy database, and the image
runs migrations before the server as a non-root user.

Nothing here builds an image or starts a container; `docker-compose config` needs no daemon.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
MAKE_ENV = REPO_ROOT / "scripts" / "make_env.py"

DOCKER_COMPOSE = shutil.which("docker-compose")
needs_docker_compose = pytest.mark.skipif(
    DOCKER_COMPOSE is None, reason="docker-compose is not on PATH (apt-get install docker-compose)"
)


def run_compose(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The developer's shell must not fill in what .env is supposed to provide.
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("POSTGRES_", "COMPOSE_"))
    }
    assert DOCKER_COMPOSE is not None
    return subprocess.run(
        [DOCKER_COMPOSE, *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def make_env(output: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(MAKE_ENV), "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )


def env_values(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


@pytest.fixture
def compose_dir(tmp_path: Path) -> Path:
    """The compose file beside the `.env` that `make run` would write."""
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    make_env(tmp_path / ".env")
    return tmp_path


class TestMakeEnv:
    def test_fills_every_secret_and_keeps_every_variable(self, tmp_path: Path) -> None:
        result = make_env(tmp_path / ".env")
        values = env_values(tmp_path / ".env")
        assert set(values) == set(env_values(ENV_EXAMPLE))
        for name in ("JWT_SECRET_KEY", "POSTGRES_PASSWORD", "FIRST_ADMIN_PASSWORD"):
            assert len(values[name]) >= 24, name
        assert len(values["JWT_SECRET_KEY"]) >= 32
        assert (tmp_path / ".env").stat().st_mode & 0o777 == 0o600
        # The admin's credentials are printed once, for the person running `make run`.
        assert f"admin / {values['FIRST_ADMIN_PASSWORD']}" in result.stdout

    def test_each_run_generates_new_secrets(self, tmp_path: Path) -> None:
        make_env(tmp_path / "one.env")
        make_env(tmp_path / "two.env")
        one, two = env_values(tmp_path / "one.env"), env_values(tmp_path / "two.env")
        assert one["JWT_SECRET_KEY"] != two["JWT_SECRET_KEY"]

    def test_existing_env_is_never_overwritten(self, tmp_path: Path) -> None:
        (tmp_path / ".env").write_text("JWT_SECRET_KEY=mine\n")
        make_env(tmp_path / ".env")
        assert (tmp_path / ".env").read_text() == "JWT_SECRET_KEY=mine\n"

    def test_example_ships_no_secret(self) -> None:
        values = env_values(ENV_EXAMPLE)
        for name in ("JWT_SECRET_KEY", "POSTGRES_PASSWORD", "FIRST_ADMIN_PASSWORD"):
            assert values[name] == "", f"{name} must be empty in .env.example"


def service_block(config_text: str, service: str) -> str:
    """The lines of one service in `docker-compose config` output (services at two spaces)."""
    match = re.search(rf"^  {re.escape(service)}:\n((?:(?:    .*)?\n)*)", config_text, re.M)
    assert match, f"service {service!r} missing from resolved config"
    return match.group(1)


class TestComposeFile:
    @needs_docker_compose
    def test_validates_with_env_file(self, compose_dir: Path) -> None:
        result = run_compose(compose_dir, "config", "-q")
        assert result.returncode == 0, result.stderr

    @needs_docker_compose
    def test_refuses_to_run_without_postgres_password(self, compose_dir: Path) -> None:
        env_file = compose_dir / ".env"
        kept = [
            line
            for line in env_file.read_text().splitlines()
            if not line.strip().startswith("POSTGRES_PASSWORD")
        ]
        env_file.write_text("\n".join(kept) + "\n")

        result = run_compose(compose_dir, "config", "-q")

        assert result.returncode != 0
        assert "POSTGRES_PASSWORD" in result.stderr

    @needs_docker_compose
    def test_api_waits_for_healthy_db_in_resolved_config(self, compose_dir: Path) -> None:
        result = run_compose(compose_dir, "config")
        assert result.returncode == 0, result.stderr

        api = service_block(result.stdout, "api")
        db = service_block(result.stdout, "db")
        assert re.search(r"depends_on:\n\s+db:\n\s+condition: service_healthy\n", api), api
        assert "DATABASE_URL: postgresql+asyncpg://" in api
        assert "@db:5432/" in api
        assert "healthcheck:" in db
        assert "pg_isready" in db

    def test_api_waits_for_healthy_db(self) -> None:
        yaml = pytest.importorskip("yaml", reason="no YAML parser installed")
        compose = yaml.safe_load(COMPOSE_FILE.read_text())

        assert "version" not in compose
        services = compose["services"]
        assert services["api"]["depends_on"]["db"]["condition"] == "service_healthy"
        assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
        assert services["api"]["env_file"] == ".env"
        assert "8000:8000" in services["api"]["ports"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    logical = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in logical.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, arguments = stripped.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


class TestDockerfile:
    def test_every_stage_uses_python_311_slim(self) -> None:
        bases = [
            args.split()[0] for keyword, args in dockerfile_instructions() if keyword == "FROM"
        ]
        assert bases
        assert all(base == "python:3.11-slim" for base in bases), bases

    def test_runtime_stage_runs_as_non_root(self) -> None:
        instructions = dockerfile_instructions()
        last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
        users = [args for keyword, args in instructions[last_from:] if keyword == "USER"]
        assert users, "the runtime stage has no USER line"
        user = users[-1].split(":")[0]
        assert user not in {"root", "0"}

    def test_command_migrates_then_execs_the_server(self) -> None:
        commands = [args for keyword, args in dockerfile_instructions() if keyword == "CMD"]
        assert commands, "no CMD"
        argv = json.loads(commands[-1])  # exec form: a JSON array, so signals reach the server
        assert isinstance(argv, list)
        command = " ".join(argv)
        assert "alembic upgrade head &&" in command
        # `exec`: the server replaces the shell, so SIGTERM reaches it and it drains.
        assert "exec python -m app serve" in command
        assert command.index("alembic upgrade head") < command.index("app serve")
        assert "--workers" not in command  # WEB_CONCURRENCY decides

    def test_secrets_and_local_state_stay_out_of_the_build_context(self) -> None:
        ignored = set((REPO_ROOT / ".dockerignore").read_text().split())
        assert {".env", ".venv", ".git", "*.db"} <= ignored
