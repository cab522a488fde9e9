"""`python -m app create-admin`, `set-role` and `purge-expired`: their effects, input checks,
clean exits."""

import asyncio
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from httpx import ASGITransport, AsyncClient
from sqlalchemy import select
from typer.testing import CliRunner

from app.accounts import crud, service
from app.accounts.access import Role
from app.accounts.history.models import AccountEvent
from app.accounts.keys.models import ApiKey
from app.accounts.models import RefreshToken, SignIn, User
from app.cli import cli
from app.cli.accounts import SET_ROLE
from app.db.engine import create_engine, create_sessionmaker
from app.idempotency.models import IdempotencyKey
from app.main import create_app
from app.security.passwords import password_context
from tests.conftest import employee_payload, make_settings, require_postgres, running
from tests.pg import ROOT, PostgresServer, alembic_config

PASSWORD = "tulip marble anchor"
OTHER_PASSWORD = "violet engine harbor"


def users_in(url: str) -> dict[str, User]:
    async def load() -> dict[str, User]:
        engine = create_engine(make_settings(url))
        try:
            async with create_sessionmaker(engine)() as session:
                rows = (await session.execute(select(User))).scalars()
                return {user.username: user for user in rows}
        finally:
            await engine.dispose()

    return asyncio.run(load())


def add_user(url: str, username: str, *, is_admin: bool = False, is_active: bool = True) -> User:
    async def add() -> User:
        engine = create_engine(make_settings(url))
        try:
            async with create_sessionmaker(engine)() as session:
                user = await crud.create_user(
                    session=session,
                    username=username,
                    hashed_password=password_context.hash(OTHER_PASSWORD),
                    role=Role.admin if is_admin else Role.user,
                )
                if not is_active:
                    await service.update_account(
                        session=session, user=user, changes={"is_active": False}, actor=SET_ROLE
                    )
                return user
        finally:
            await engine.dispose()

    return asyncio.run(add())


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated SQLite file named by DATABASE_URL; no signing key anywhere in sight."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    command.upgrade(alembic_config(url), "head")
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.delenv("JWT_SECRET_KEY", raising=False)
    monkeypatch.setenv("DATABASE_URL", url.replace("sqlite+aiosqlite", "sqlite"))
    return url


def run(*args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), input=stdin)


class TestCreate:
    def test_creates_an_admin_from_stdin(self, database: str) -> None:
        result = run("create-admin", "Alice", "--password-stdin", stdin=PASSWORD + "\n")

        assert result.exit_code == 0, result.output
        assert result.stdout == "Created admin 'Alice'.\n"
        alice = users_in(database)["Alice"]
        assert (alice.is_admin, alice.is_active) == (True, True)
        assert password_context.verify(PASSWORD, alice.hashed_password)
        assert alice.hashed_password.startswith("$argon2id$")
        assert PASSWORD not in result.output

    def test_prompts_twice_with_hidden_input(self, database: str) -> None:
        stdin = f"{PASSWORD}\nsomething else\n{PASSWORD}\n{PASSWORD}\n"

        result = run("create-admin", "alice", stdin=stdin)

        assert result.exit_code == 0, result.output
        assert "do not match" in result.output
        assert result.output.count("Password:") == 2
        assert result.output.count("Repeat for confirmation:") == 2
        assert PASSWORD not in result.output  # hidden input is not echoed
        assert password_context.verify(PASSWORD, users_in(database)["alice"].hashed_password)

    def test_created_admin_can_sign_in_and_write(self, database: str) -> None:
        run("create-admin", "alice", "--password-stdin", stdin=PASSWORD)

        async def sign_in_and_create() -> tuple[int, int]:
            app = create_app(make_settings(database))
            transport = ASGITransport(app=app)
            async with running(app), AsyncClient(transport=transport, base_url="http://t") as c:
                login = await c.post(
                    "/auth/token", data={"username": "ALICE", "password": PASSWORD}
                )
                token = login.json()["access_token"]
                created = await c.post(
                    "/employees/",
                    json=employee_payload(),
                    headers={"Authorization": f"Bearer {token}"},
                )
            return login.status_code, created.status_code

        assert asyncio.run(sign_in_and_create()) == (200, 201)


class TestPromote:
    def test_promotes_and_reactivates_ignoring_case_and_keeps_the_password(
        self, database: str
    ) -> None:
        before = add_user(database, "jane.doe", is_active=False)

        result = run("create-admin", "JANE.DOE")  # no password is asked for

        assert result.exit_code == 0, result.output
        assert result.stdout == "Existing account 'jane.doe': promoted to admin, reactivated.\n"
        after = users_in(database)
        assert list(after) == ["jane.doe"]
        jane = after["jane.doe"]
        assert (jane.is_admin, jane.is_active) == (True, True)
        assert jane.hashed_password == before.hashed_password

    def test_password_stdin_alone_does_not_change_an_existing_password(self, database: str) -> None:
        before = add_user(database, "jane.doe")

        result = run("create-admin", "jane.doe", "--password-stdin", stdin=PASSWORD)

        assert result.exit_code == 0, result.output
        assert result.stdout == "Existing account 'jane.doe': promoted to admin.\n"
        assert users_in(database)["jane.doe"].hashed_password == before.hashed_password

    def test_reset_password_replaces_it_and_ends_sessions(self, database: str) -> None:
        before = add_user(database, "jane.doe", is_admin=True)

        result = run(
            "create-admin", "jane.doe", "--reset-password", "--password-stdin", stdin=PASSWORD
        )

        assert result.exit_code == 0, result.output
        assert result.stdout == (
            "Existing account 'jane.doe': password reset, existing sessions ended.\n"
        )
        jane = users_in(database)["jane.doe"]
        assert password_context.verify(PASSWORD, jane.hashed_password)
        assert jane.token_version == before.token_version + 1

    def test_an_active_admin_is_left_as_it_is(self, database: str) -> None:
        add_user(database, "root", is_admin=True)

        result = run("create-admin", "root")

        assert result.exit_code == 0, result.output
        assert result.stdout == "'root' is already an active admin; nothing changed.\n"


def events_in(url: str) -> list[AccountEvent]:
    async def load() -> list[AccountEvent]:
        engine = create_engine(make_settings(url))
        try:
            async with create_sessionmaker(engine)() as session:
                statement = select(AccountEvent).order_by(AccountEvent.id)  # type: ignore[arg-type]
                return list((await session.execute(statement)).scalars())
        finally:
            await engine.dispose()

    return asyncio.run(load())


class TestPromotionHistory:
    def test_a_promotion_is_recorded_as_the_command_line(self, database: str) -> None:
        add_user(database, "jane.doe")

        result = run("create-admin", "jane.doe")

        assert result.exit_code == 0, result.output
        (event,) = events_in(database)
        assert (event.kind, event.actor_id, event.actor_username) == (
            "role_changed",
            None,
            "cli:create-admin",
        )
        assert event.changes == {"role": {"before": "user", "after": "admin"}}

    def test_a_new_admin_and_an_admin_already_are_no_role_change(self, database: str) -> None:
        run("create-admin", "alice", "--password-stdin", stdin=PASSWORD)
        run("create-admin", "alice")

        assert events_in(database) == []


class TestSetRole:
    @pytest.mark.parametrize("role", ["auditor", "admin", "user"])
    def test_sets_the_role_and_records_it(self, database: str, role: str) -> None:
        add_user(database, "jane.doe")

        result = run("set-role", "JANE.DOE", role)

        assert result.exit_code == 0, result.output
        jane = users_in(database)["jane.doe"]
        assert jane.role == role
        if role == "user":
            assert result.stdout == "'jane.doe' is already user; nothing changed.\n"
            assert events_in(database) == []
        else:
            assert result.stdout == f"'jane.doe' is now {role} (was user).\n"
            (event,) = events_in(database)
            assert (event.kind, event.actor_username) == ("role_changed", "cli:set-role")
            assert event.changes == {"role": {"before": "user", "after": role}}

    def test_the_last_active_admin_keeps_its_role(self, database: str) -> None:
        add_user(database, "root", is_admin=True)

        result = run("set-role", "root", "auditor")

        assert result.exit_code == 2
        assert "last active administrator" in result.stderr
        assert users_in(database)["root"].role == "admin"
        assert events_in(database) == []

    @pytest.mark.parametrize("role", ["superuser", "Admin", "", "1"])
    def test_an_unknown_role_is_refused(self, database: str, role: str) -> None:
        add_user(database, "jane.doe")

        result = run("set-role", "jane.doe", role)

        assert result.exit_code == 2
        assert users_in(database)["jane.doe"].role == "user"

    def test_an_unknown_account_is_refused(self, database: str) -> None:
        result = run("set-role", "nobody", "admin")

        assert result.exit_code == 2
        assert result.stderr == "Error: there is no account 'nobody'\n"


class TestBadInput:
    @pytest.mark.parametrize(
        ("password", "reason"),
        [
            ("short", "at least 8 characters"),
            ("password123", "most common passwords"),
            ("alice.smith", "same as the username"),
            ("x" * 129, "at most 128 characters"),
            ("", "at least 8 characters"),
            ("tab\tinside-it", "control characters"),
        ],
    )
    def test_weak_password_is_refused_with_exit_2(
        self, database: str, password: str, reason: str
    ) -> None:
        result = run("create-admin", "alice.smith", "--password-stdin", stdin=password + "\n")

        assert result.exit_code == 2
        assert result.stderr.startswith("Error: the password is refused: ")
        assert reason in result.stderr
        assert "Traceback" not in result.output
        assert users_in(database) == {}

    def test_weak_password_on_reset_keeps_the_old_one(self, database: str) -> None:
        before = add_user(database, "jane.doe")

        result = run(
            "create-admin", "jane.doe", "--reset-password", "--password-stdin", stdin="jane.doe"
        )

        assert result.exit_code == 2
        assert "same as the username" in result.stderr
        jane = users_in(database)["jane.doe"]
        assert (jane.is_admin, jane.hashed_password) == (False, before.hashed_password)

    @pytest.mark.parametrize("username", ["ab", "bad name", "x" * 51, "root;drop", "ü-admin", ""])
    def test_bad_username_is_refused_with_exit_2(self, database: str, username: str) -> None:
        result = run("create-admin", username, "--password-stdin", stdin=PASSWORD)

        assert result.exit_code == 2
        assert result.stderr == (
            "Error: the username must be 3 to 50 characters: letters, digits, '.', '_' or '-'\n"
        )
        assert users_in(database) == {}

    def test_missing_username_is_a_usage_error(self, database: str) -> None:
        result = run("create-admin")

        assert result.exit_code == 2
        assert "Missing argument 'USERNAME'" in result.output

    def test_bad_database_url_is_refused_with_exit_2(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("DATABASE_URL", "mysql://root@db/hr")

        result = run("create-admin", "alice", "--password-stdin", stdin=PASSWORD)

        assert result.exit_code == 2
        assert "DATABASE_URL" in result.stderr


class TestDatabaseUnavailable:
    def test_unreachable_server_exits_1_without_a_traceback(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("DATABASE_URL", "postgresql://nobody:secret-pw@127.0.0.1:1/hr")

        result = run("create-admin", "alice", "--password-stdin", stdin=PASSWORD)

        assert result.exit_code == 1
        assert result.stderr.startswith("Error: the database is unreachable or not migrated")
        assert "alembic upgrade head" in result.stderr
        assert "Traceback" not in result.output
        assert "secret-pw" not in result.output

    def test_unmigrated_database_exits_1(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.chdir(tmp_path)
        (tmp_path / "empty.db").touch()
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")

        result = run("create-admin", "alice", "--password-stdin", stdin=PASSWORD)

        assert result.exit_code == 1
        assert "alembic upgrade head" in result.stderr
        assert "no such table" in result.stderr

    def test_missing_sqlite_file_exits_1_and_is_not_created(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'typo.db'}")

        result = run("create-admin", "alice", "--password-stdin", stdin=PASSWORD)

        assert result.exit_code == 1
        assert "no database file at" in result.stderr
        assert not (tmp_path / "typo.db").exists()


def test_creates_and_promotes_on_postgresql(
    postgres_server: PostgresServer | None,
    postgres_template: str | None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    server = require_postgres(postgres_server)
    name = asyncio.run(server.create_database(template=postgres_template))
    try:
        url = server.url_for(name)
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("JWT_SECRET_KEY", raising=False)
        monkeypatch.setenv("DATABASE_URL", url)
        add_user(url, "jane.doe", is_active=False)

        created = run("create-admin", "alice", "--password-stdin", stdin=PASSWORD)
        promoted = run("create-admin", "Jane.Doe")

        assert (created.exit_code, promoted.exit_code) == (0, 0), created.output + promoted.output
        users = users_in(url)
        assert {n: (u.is_admin, u.is_active) for n, u in users.items()} == {
            "alice": (True, True),
            "jane.doe": (True, True),
        }
    finally:
        asyncio.run(server.drop_database(name))


@pytest.mark.parametrize("args", [["--help"], ["create-admin", "--help"], []])
def test_python_m_app_is_the_entry_point(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == (2 if not args else 0), result.stderr
    output = result.stdout + result.stderr
    assert "Usage: python -m app" in output
    assert "create-admin" in output
    if args[-1:] == ["--help"] and len(args) == 2:
        assert "--password-stdin" in output and "--reset-password" in output


COMMANDS = [
    *("create-admin", "set-role", "purge-expired"),
    *("seed-demo", "import-csv", "export-csv", "check"),
]


@pytest.mark.parametrize("command", ["", *COMMANDS, "serve"])
def test_help_shows_flags_without_a_value(command: str) -> None:
    # typer shows every option's type; for a flag (`--help <bool>`) it reads as if it took one.
    result = CliRunner().invoke(cli, [*command.split(), "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    (help_line,) = [line for line in result.output.splitlines() if "--help" in line]
    assert "<" not in help_line and "bool" not in result.output


def add_token_and_key(url: str, *rows: tuple[User, datetime]) -> None:
    """A sign-in with one refresh token, an API key and an idempotency key, per (user,
    expires_at)."""

    async def add() -> None:
        engine = create_engine(make_settings(url))
        try:
            async with create_sessionmaker(engine)() as session:
                for user, expires_at in rows:
                    sign_in = SignIn(user_id=user.id, expires_at=expires_at)
                    session.add(sign_in)
                    await session.flush()
                    session.add(
                        RefreshToken(
                            user_id=user.id,
                            family_id=sign_in.id,
                            token_version=0,
                            token_hash=uuid.uuid4().hex * 2,
                            expires_at=expires_at,
                        )
                    )
                    session.add(
                        IdempotencyKey(
                            user_id=user.id,
                            key=uuid.uuid4().hex,
                            request_hash="0" * 64,
                            status_code=201,
                            response_body={},
                            response_headers={},
                            expires_at=expires_at,
                        )
                    )
                    session.add(
                        ApiKey(
                            user_id=user.id,
                            name="nightly export",
                            prefix="erk_test",
                            key_hash=uuid.uuid4().hex * 2,
                            scopes="employees:read",
                            expires_at=expires_at,
                        )
                    )
                await session.commit()
        finally:
            await engine.dispose()

    asyncio.run(add())


class TestPurgeExpired:
    """`purge-expired`: what sign-ins and writes do not clean up (accounts that went quiet)."""

    def test_deletes_every_accounts_expired_rows_and_keeps_live_ones(self, database: str) -> None:
        quiet, busy = add_user(database, "quiet.user"), add_user(database, "busy.user")
        past = datetime.now(UTC) - timedelta(seconds=1)
        future = datetime.now(UTC) + timedelta(days=1)

        async def left() -> list[list[datetime]]:
            engine = create_engine(make_settings(database))
            try:
                async with create_sessionmaker(engine)() as session:
                    tables = (RefreshToken, ApiKey, IdempotencyKey)
                    return [
                        list((await session.execute(select(table.expires_at))).scalars())
                        for table in tables
                    ]
            finally:
                await engine.dispose()

        add_token_and_key(database, (quiet, past), (busy, past), (busy, future))
        result = run("purge-expired")

        assert result.exit_code == 0, result.output
        assert (
            "Deleted 2 expired refresh tokens, 2 ended sign-ins, 2 expired API keys and 2 expired "
            "idempotency keys." in result.output
        )
        for kept in asyncio.run(left()):  # refresh tokens, API keys, idempotency keys
            assert len(kept) == 1 and kept[0] > datetime.now(UTC)
        assert "Deleted 0 expired" in run("purge-expired").output  # nothing left to do

    def test_one_of_each_reads_in_the_singular(self, database: str) -> None:
        quiet = add_user(database, "quiet.user")
        add_token_and_key(database, (quiet, datetime.now(UTC) - timedelta(seconds=1)))
        result = run("purge-expired")
        expected = (
            "Deleted 1 expired refresh token, 1 ended sign-in, 1 expired API key and 1 expired "
            "idempotency key.\n"
        )
        assert result.stdout == expected

    def test_unreachable_server_exits_1(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/hr")
        result = run("purge-expired")
        assert result.exit_code == 1
        assert result.stderr.startswith("Error: the database is unreachable")
