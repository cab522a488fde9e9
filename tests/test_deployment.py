"""Deployment files: the compose stack validates and starts in the right order, nginx fronts the
replicas, and the image's entrypoint migrates (unless told not to) before it becomes the server.

Nothing here builds an image or starts a container; `docker-compose config` needs no daemon, and
the entrypoint runs here with the project's own alembic and Python.
"""

import contextlib
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import SECRET

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
MAKE_ENV = REPO_ROOT / "scripts" / "make_env.py"
ENTRYPOINT = REPO_ROOT / "deploy" / "docker-entrypoint.sh"
PGBOUNCER_LAYER = REPO_ROOT / "deploy" / "compose.pgbouncer.yml"

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


def resolved_config(directory: Path, *options: str) -> dict[str, Any]:
    """What `docker-compose config` makes of the file and `.env`: anchors merged, variables set."""
    result = run_compose(directory, *options, "config")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert isinstance(config, dict)
    return config


API_SERVICES = ("api", "api-replica")


class TestComposeFile:
    @needs_docker_compose
    @pytest.mark.parametrize("options", [(), ("--profile", "scale")], ids=["default", "scale"])
    def test_validates_with_env_file(self, compose_dir: Path, options: tuple[str, ...]) -> None:
        result = run_compose(compose_dir, *options, "config", "-q")
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
    def test_api_starts_after_healthy_db_and_redis_and_a_finished_migration(
        self, compose_dir: Path
    ) -> None:
        services = resolved_config(compose_dir)["services"]

        for name in API_SERVICES:
            assert services[name]["depends_on"] == {
                "db": {"condition": "service_healthy"},
                "redis": {"condition": "service_healthy"},
                "migrate": {"condition": "service_completed_successfully"},
            }, name
            environment = services[name]["environment"]
            assert environment["MIGRATE_ON_START"] == "false", name
            assert environment["DATABASE_URL"].startswith("postgresql+asyncpg://employees:")
            assert environment["DATABASE_URL"].endswith("@db:5432/employees")
            assert environment["REDIS_URL"] == "redis://redis:6379/0"
        assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
        assert "pgdata:/var/lib/postgresql/data" in services["db"]["volumes"][0]
        assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]

    @needs_docker_compose
    def test_migrate_is_a_one_shot_of_the_same_image(self, compose_dir: Path) -> None:
        services = resolved_config(compose_dir)["services"]

        migrate = services["migrate"]
        assert migrate["command"] == ["alembic", "upgrade", "head"]
        assert migrate["restart"] == "no"
        assert migrate["depends_on"] == {"db": {"condition": "service_healthy"}}
        assert migrate["image"] == services["api"]["image"] == services["api-replica"]["image"]
        assert (
            migrate["environment"]["DATABASE_URL"] == services["api"]["environment"]["DATABASE_URL"]
        )

    @needs_docker_compose
    def test_scale_profile_puts_replicas_behind_nginx(self, compose_dir: Path) -> None:
        services = resolved_config(compose_dir, "--profile", "scale")["services"]

        assert {name for name, s in services.items() if "scale" in s.get("profiles", [])} == {
            "api-replica",
            "nginx",
        }
        assert services["api-replica"]["deploy"]["replicas"] >= 2
        assert "ports" not in services["api-replica"]  # replicas cannot share a host port
        nginx = services["nginx"]
        assert nginx["depends_on"] == {
            "api": {"condition": "service_healthy"},
            "api-replica": {"condition": "service_healthy"},
        }
        assert [p["target"] for p in nginx["ports"]] == [nginx_listen_port()]
        mounted = [v for v in nginx["volumes"] if v.endswith(":/etc/nginx/nginx.conf:ro")]
        assert mounted and mounted[0].split(":")[0].endswith("deploy/nginx/nginx.conf")
        # X-Forwarded-* are believed from nginx's fixed address, and from nothing else.
        nginx_ip = nginx["networks"]["backend"]["ipv4_address"]
        for name in API_SERVICES:
            assert services[name]["environment"]["FORWARDED_ALLOW_IPS"] == nginx_ip

    def test_parses_without_docker_compose(self) -> None:
        compose = yaml.safe_load(COMPOSE_FILE.read_text())  # PyYAML resolves the `<<` merges

        assert "version" not in compose
        services = compose["services"]
        assert services["api"]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
        assert services["api"]["env_file"] == ".env"
        assert "8000:8000" in services["api"]["ports"]
        assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]


class TestPgBouncerLayer:
    """deploy/compose.pgbouncer.yml on top of the main file: the servers go through PgBouncer in
    transaction mode, the migration and the direct path go to the database itself."""

    @pytest.fixture
    def layered(self, compose_dir: Path) -> dict[str, Any]:
        (compose_dir / "deploy").mkdir()
        shutil.copy(PGBOUNCER_LAYER, compose_dir / "deploy" / PGBOUNCER_LAYER.name)
        files = ("-f", "docker-compose.yml", "-f", f"deploy/{PGBOUNCER_LAYER.name}")
        return resolved_config(compose_dir, *files, "--profile", "scale")["services"]

    @needs_docker_compose
    def test_servers_connect_through_pgbouncer_in_transaction_mode(
        self, layered: dict[str, Any]
    ) -> None:
        bouncer = layered["pgbouncer"]
        assert bouncer["environment"]["POOL_MODE"] == "transaction"
        assert int(bouncer["environment"]["MAX_PREPARED_STATEMENTS"]) > 0
        assert bouncer["environment"]["DB_HOST"] == "db"
        assert bouncer["depends_on"] == {"db": {"condition": "service_healthy"}}
        port = bouncer["environment"]["LISTEN_PORT"]
        for name in API_SERVICES:
            environment = layered[name]["environment"]
            assert environment["DATABASE_POOL_MODE"] == "transaction", name
            # It keeps prepared statements (above), so the servers keep their statement cache.
            assert environment["DATABASE_POOLER_PREPARED_STATEMENTS"] == "true", name
            assert environment["DATABASE_URL"].endswith(f"@pgbouncer:{port}/employees"), name
            assert environment["DATABASE_DIRECT_URL"].endswith("@db:5432/employees"), name
            assert layered[name]["depends_on"]["pgbouncer"] == {"condition": "service_started"}
            # The rest of the stack's order is kept.
            assert layered[name]["depends_on"]["migrate"] == {
                "condition": "service_completed_successfully"
            }

    @needs_docker_compose
    def test_the_migration_keeps_its_direct_connection(self, layered: dict[str, Any]) -> None:
        migrate = layered["migrate"]["environment"]
        assert migrate["DATABASE_URL"].endswith("@db:5432/employees")
        assert migrate.get("DATABASE_POOL_MODE", "session") == "session"

    def test_uses_the_same_image_as_the_kubernetes_manifest(self) -> None:
        layer = yaml.safe_load(PGBOUNCER_LAYER.read_text())
        manifest = (
            REPO_ROOT / "deploy" / "kubernetes" / "pgbouncer" / "pgbouncer.yaml"
        ).read_text()
        assert f"image: {layer['services']['pgbouncer']['image']}" in manifest


NGINX_CONF = REPO_ROOT / "deploy" / "nginx" / "nginx.conf"


def nginx_listen_port() -> int:
    match = re.search(r"^\s*listen\s+(\d+);", NGINX_CONF.read_text(), re.M)
    assert match, "nginx.conf has no listen directive"
    return int(match.group(1))


class TestNginxConf:
    def test_balances_over_every_api_service(self) -> None:
        text = NGINX_CONF.read_text()
        upstream = re.search(r"upstream (\w+) \{(.*?)\}", text, re.S)
        assert upstream
        servers = re.findall(r"^\s*server\s+([\w.-]+:\d+)", upstream.group(2), re.M)
        assert servers == [f"{name}:8000" for name in API_SERVICES]
        assert f"proxy_pass http://{upstream.group(1)};" in text

    def test_passes_the_client_address_and_scheme(self) -> None:
        text = NGINX_CONF.read_text()
        # The peer nginx saw, not $proxy_add_x_forwarded_for (which keeps what the client sent).
        assert "proxy_set_header X-Forwarded-For $remote_addr;" in text
        assert "proxy_set_header X-Forwarded-Proto $scheme;" in text
        assert "proxy_set_header Host $host;" in text

    def test_compose_file_mounts_this_config(self) -> None:
        compose = yaml.safe_load(COMPOSE_FILE.read_text())
        nginx = compose["services"]["nginx"]
        assert "./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
        assert nginx["profiles"] == ["scale"]
        assert "version" not in compose


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

    def test_entrypoint_is_exec_form_and_the_default_command_serves(self) -> None:
        instructions = dockerfile_instructions()
        (entrypoint,) = [json.loads(a) for k, a in instructions if k == "ENTRYPOINT"]
        (command,) = [json.loads(a) for k, a in instructions if k == "CMD"]
        assert entrypoint == ["docker-entrypoint"]
        assert command == ["serve"]
        copies = [a.split() for k, a in instructions if k == "COPY"]
        assert ["deploy/docker-entrypoint.sh", "/usr/local/bin/docker-entrypoint"] in copies

    def test_healthcheck_asks_health_live_on_the_configured_port(self) -> None:
        argv = healthcheck_command()
        assert argv[0] == "python"  # the slim image has no curl
        assert "/health/live" in argv[-1]
        assert "PORT" in argv[-1]
        ports = [a for k, a in dockerfile_instructions() if k == "EXPOSE"]
        assert ports == ["8000"]

    def test_secrets_and_local_state_stay_out_of_the_build_context(self) -> None:
        ignored = set((REPO_ROOT / ".dockerignore").read_text().split())
        assert {".env", ".venv", ".git", "*.db"} <= ignored

    def test_everything_copied_is_in_the_build_context(self) -> None:
        patterns = [
            line.strip()
            for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        copies = [a.split() for k, a in dockerfile_instructions() if k == "COPY"]
        sources = [path for words in copies if not words[0].startswith("--") for path in words[:-1]]
        assert "deploy/docker-entrypoint.sh" in sources
        for source in sources:
            assert (REPO_ROOT / source).exists(), source
            parts = Path(source).parts
            # An excluded folder excludes everything below it.
            prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
            for prefix in prefixes:
                assert not any(fnmatch.fnmatch(prefix, p) for p in patterns), (source, prefix)


def healthcheck_command() -> list[str]:
    (healthcheck,) = [a for k, a in dockerfile_instructions() if k == "HEALTHCHECK"]
    options, separator, command = healthcheck.partition("CMD ")
    assert separator, healthcheck
    assert "--interval=" in options and "--timeout=" in options
    argv = json.loads(command)  # exec form
    assert isinstance(argv, list)
    return argv


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """`alembic` and `python` stand-ins that record their arguments (and can be told to fail)."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for name in ("alembic", "python"):
        script = directory / name
        script.write_text(
            f'#!/bin/sh\necho "{name} $*" >> "$CALLS"\nexit "${{FAIL_{name.upper()}:-0}}"\n'
        )
        script.chmod(0o755)
    return directory


def run_entrypoint(
    fake_bin: Path, *args: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    calls = fake_bin / "calls.log"
    environment = {"PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}", "CALLS": str(calls)}
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), *args],
        env=environment | env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result, calls.read_text().splitlines() if calls.exists() else []


SERVE = "python -m app serve --host 0.0.0.0 --port"


class TestEntrypoint:
    def test_migrates_then_serves_on_port_8000(self, fake_bin: Path) -> None:
        result, calls = run_entrypoint(fake_bin)
        assert result.returncode == 0, result.stderr
        assert calls == ["alembic upgrade head", f"{SERVE} 8000"]

    def test_serve_honours_port_and_passes_options_on(self, fake_bin: Path) -> None:
        _, calls = run_entrypoint(fake_bin, "serve", "--no-access-log", PORT="9123")
        assert calls == ["alembic upgrade head", f"{SERVE} 9123 --no-access-log"]

    @pytest.mark.parametrize("value", ["false", "0", "no"])
    def test_migrate_on_start_false_only_serves(self, fake_bin: Path, value: str) -> None:
        result, calls = run_entrypoint(fake_bin, MIGRATE_ON_START=value)
        assert calls == [f"{SERVE} 8000"]
        assert "not migrating" in result.stdout

    def test_failed_migration_never_starts_the_server(self, fake_bin: Path) -> None:
        result, calls = run_entrypoint(fake_bin, FAIL_ALEMBIC="3")
        assert result.returncode == 3
        assert calls == ["alembic upgrade head"]

    def test_other_commands_run_instead_of_the_server(self, fake_bin: Path) -> None:
        _, calls = run_entrypoint(fake_bin, "alembic", "upgrade", "head")
        assert calls == ["alembic upgrade head"]  # once: the migrate service/Job, no server


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


class TestImageStartup:
    """The real entrypoint, alembic and server (no container): what `docker run IMAGE` does."""

    def test_migrates_serves_passes_the_healthcheck_and_stops_on_sigterm(
        self, tmp_path: Path, request: pytest.FixtureRequest
    ) -> None:
        from tests.test_startup import free_port, server_env, wait_until_up

        port = free_port()
        venv_bin = Path(sys.executable).parent
        env = server_env(
            PATH=f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
            ALEMBIC_CONFIG=str(REPO_ROOT / "alembic.ini"),
            DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.db'}",  # not migrated yet
            JWT_SECRET_KEY=SECRET,
            PORT=str(port),
            WEB_CONCURRENCY="1",
            SHUTDOWN_DRAIN_SECONDS="2",
        )
        log = tmp_path / "server.log"
        with log.open("wb") as output:
            # Own process group: whatever happens, nothing it started outlives the test.
            server = subprocess.Popen(
                ["sh", str(ENTRYPOINT)],
                cwd=tmp_path,
                env=env,
                stdout=output,
                stderr=output,
                start_new_session=True,
            )
        request.addfinalizer(lambda: kill_group(server.pid))
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_up(base, server, log)
            # Migrated by the entrypoint before the server started: ready at once.
            assert httpx.get(f"{base}/health/ready").status_code == 200, log.read_text()

            healthcheck = healthcheck_command()
            healthy = subprocess.run(
                [sys.executable, *healthcheck[1:]], env=env, timeout=30, check=False
            )
            assert healthy.returncode == 0
            unhealthy = subprocess.run(
                [sys.executable, *healthcheck[1:]],
                env=env | {"PORT": str(free_port())},
                capture_output=True,
                timeout=30,
                check=False,
            )
            assert unhealthy.returncode != 0
        finally:
            # The process started is the server itself (exec), so SIGTERM reaches it: it shuts
            # down and the port closes. A shell that did not exec would die and leave it up.
            server.send_signal(signal.SIGTERM)
            returncode = server.wait(timeout=30)
        # uvicorn re-raises the signal once it has shut down cleanly.
        assert returncode in (0, -signal.SIGTERM), log.read_text()
        assert "Application shutdown complete" in log.read_text()
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{base}/health/live", timeout=2)
