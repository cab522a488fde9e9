"""Deployment files: the compose stack validates, waits for a healthy database, and the image
runs migrations before the server as a non-root user.

Nothing here builds an image or starts a container; `docker-compose config` needs no daemon.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
MINIMAL_ENV = (
    "POSTGRES_PASSWORD=test-only-postgres-password\n"
    "JWT_SECRET_KEY=test-only-secret-key-that-is-long-enough-0123456789\n"
)

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
    return subprocess.run(  # noqa: S603 - fixed argv, no shell
        [DOCKER_COMPOSE, *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def compose_dir(tmp_path: Path) -> Path:
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    env_text = ENV_EXAMPLE.read_text() if ENV_EXAMPLE.exists() else MINIMAL_ENV
    (tmp_path / ".env").write_text(env_text)
    return tmp_path


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

    def test_command_migrates_then_execs_uvicorn(self) -> None:
        commands = [args for keyword, args in dockerfile_instructions() if keyword == "CMD"]
        assert commands, "no CMD"
        argv = json.loads(commands[-1])  # exec form: a JSON array, so signals reach the server
        assert isinstance(argv, list)
        command = " ".join(argv)
        assert "alembic upgrade head &&" in command
        assert "exec uvicorn app.main:app" in command
        assert command.index("alembic upgrade head") < command.index("uvicorn")
        assert "--workers" not in command  # WEB_CONCURRENCY decides

    def test_secrets_and_local_state_stay_out_of_the_build_context(self) -> None:
        ignored = set((REPO_ROOT / ".dockerignore").read_text().split())
        assert {".env", ".venv", ".git", "*.db"} <= ignored
