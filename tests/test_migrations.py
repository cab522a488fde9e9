"""Alembic owns the schema: migrations reproduce the models exactly and downgrade cleanly."""

import asyncio
import hashlib
import subprocess
import sys
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from httpx import ASGITransport, AsyncClient
from sqlalchemy import inspect, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from app.accounts.models import SignIn
from app.core.types import UTCDateTime
from app.main import create_app
from app.models import include_for, metadata
from app.security.tokens import hash_refresh_token
from tests.conftest import make_settings, require_postgres, running
from tests.pg import ROOT, PostgresServer, alembic_config, asyncpg_dsn


async def inspect_database(url: str) -> tuple[list[Any], set[str], set[str]]:
    """(differences between the database and the models, table names, index names)."""
    engine = create_async_engine(url)

    def read(connection: Any) -> tuple[list[Any], set[str], set[str]]:
        with warnings.catch_warnings():
            # SQLite cannot reflect the lower(username) index, so autogenerate skips comparing
            # it there (PostgreSQL compares it); the index itself is checked by name below.
            warnings.filterwarnings("ignore", message=".*expression-based index.*")
            options = {"include_object": include_for(connection.dialect.name), "compare_type": True}
            diff = compare_metadata(MigrationContext.configure(connection, opts=options), metadata)
            inspector = inspect(connection)
            tables = set(inspector.get_table_names())
            indexes = {i["name"] for t in tables for i in inspector.get_indexes(t)}
        return diff, tables, indexes

    try:
        async with engine.connect() as connection:
            return await connection.run_sync(read)
    finally:
        await engine.dispose()


def check_round_trip(url: str, expected_indexes: set[str]) -> None:
    config = alembic_config(url)
    command.upgrade(config, "head")
    diff, tables, indexes = asyncio.run(inspect_database(url))
    assert diff == []
    assert tables == {"alembic_version", *metadata.tables}
    assert expected_indexes <= indexes

    command.downgrade(config, "base")
    _, tables, _ = asyncio.run(inspect_database(url))
    assert tables == {"alembic_version"}

    command.upgrade(config, "head")
    diff, _, _ = asyncio.run(inspect_database(url))
    assert diff == []


SORT_INDEXES = {
    f"ix_employee_{column}_emp_id" for column in ("emp_name", "city", "country", "emp_dob")
}


def test_postgres_migrations_match_models_and_downgrade(postgres_server: PostgresServer | None):
    server = require_postgres(postgres_server)
    name = asyncio.run(server.create_database())
    try:
        check_round_trip(server.url_for(name), SORT_INDEXES | {"uq_app_user_username_lower"})
    finally:
        asyncio.run(server.drop_database(name))


def test_sqlite_migrations_match_models_and_downgrade(tmp_path: Path):
    check_round_trip(f"sqlite+aiosqlite:///{tmp_path / 'migrated.db'}", SORT_INDEXES)


async def schema_snapshot(url: str) -> dict[str, Any]:
    """Tables with their columns, keys and indexes: what a revision's upgrade may change."""
    engine = create_async_engine(url)

    def read(connection: Any) -> dict[str, Any]:
        inspector = inspect(connection)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*expression-based index.*")
            return {
                table: {
                    "columns": sorted(
                        (c["name"], str(c["type"]), c["nullable"])
                        for c in inspector.get_columns(table)
                    ),
                    "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
                    "indexes": sorted(
                        (i["name"], str(i["column_names"]), i["unique"])
                        for i in inspector.get_indexes(table)
                    ),
                    "unique": sorted(
                        (u["name"], str(u["column_names"]))
                        for u in inspector.get_unique_constraints(table)
                    ),
                    "foreign_keys": sorted(
                        (str(f["constrained_columns"]), f["referred_table"])
                        for f in inspector.get_foreign_keys(table)
                    ),
                    # PostgreSQL storage parameters (autovacuum thresholds)
                    "options": inspector.get_table_options(table),
                }
                for table in inspector.get_table_names()
                if table != "alembic_version"
            }

    try:
        async with engine.connect() as connection:
            return await connection.run_sync(read)
    finally:
        await engine.dispose()


def check_each_downgrade_undoes_its_upgrade(url: str) -> None:
    # Down to base and back up misses a downgrade that leaves a column behind when an earlier
    # downgrade drops its table anyway; stepping one revision at a time does not.
    config = alembic_config(url)
    revisions = list(ScriptDirectory.from_config(config).walk_revisions())[::-1]
    before = {}
    for revision in revisions:
        before[revision.revision] = asyncio.run(schema_snapshot(url))
        command.upgrade(config, revision.revision)
    for revision in reversed(revisions):
        command.downgrade(config, "-1")
        assert asyncio.run(schema_snapshot(url)) == before[revision.revision], revision.revision


def test_postgres_downgrades_undo_their_upgrades_one_by_one(
    postgres_server: PostgresServer | None,
):
    server = require_postgres(postgres_server)
    name = asyncio.run(server.create_database())
    try:
        check_each_downgrade_undoes_its_upgrade(server.url_for(name))
    finally:
        asyncio.run(server.drop_database(name))


def test_postgres_employee_table_is_vacuumed_after_one_percent_changes(
    postgres_server: PostgresServer | None,
):
    # Offset pages need an up-to-date visibility map (index-only scans): see revision 0005.
    server = require_postgres(postgres_server)
    name = asyncio.run(server.create_database())
    try:
        url = server.url_for(name)
        command.upgrade(alembic_config(url), "head")
        options = asyncio.run(schema_snapshot(url))["employee"]["options"]
    finally:
        asyncio.run(server.drop_database(name))

    assert options["postgresql_with"] == {
        "autovacuum_vacuum_scale_factor": "0.01",
        "autovacuum_vacuum_insert_scale_factor": "0.01",
        "autovacuum_analyze_scale_factor": "0.02",
    }


def test_sqlite_downgrades_undo_their_upgrades_one_by_one(tmp_path: Path):
    check_each_downgrade_undoes_its_upgrade(f"sqlite+aiosqlite:///{tmp_path / 'steps.db'}")


def test_one_linear_history():
    script = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://"))
    assert len(script.get_heads()) == 1
    for revision in script.walk_revisions():
        assert revision.doc, f"revision {revision.revision} needs a message"


INSERT_USER = "INSERT INTO app_user (id, username, hashed_password, role, is_active, created_at)"


def test_username_uniqueness_is_case_insensitive_in_the_schema(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'u.db'}"
    command.upgrade(alembic_config(url), "head")

    async def insert_twice() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                await connection.exec_driver_sql(
                    f"{INSERT_USER} VALUES ('a', 'Alice', 'h', 'user', 1, '2026-01-01')"
                )
            async with engine.begin() as connection:
                await connection.exec_driver_sql(
                    f"{INSERT_USER} VALUES ('b', 'ALICE', 'h', 'user', 1, '2026-01-01')"
                )
        finally:
            await engine.dispose()

    with pytest.raises(IntegrityError, match="UNIQUE"):
        asyncio.run(insert_twice())


# Derived as alembic/env.py documents it; a different key there fails the waiting test below.
MIGRATION_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"employee-records-api:alembic-migrations").digest()[:8], "big", signed=True
)


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://")).get_current_head()
    assert head is not None
    return head


async def start_upgrade(url: str) -> asyncio.subprocess.Process:
    """`alembic upgrade head` in a process of its own, as a replica starting up runs it."""
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "alembic", "-x", f"url={url}", "upgrade", "head"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def finish(process: asyncio.subprocess.Process) -> tuple[int, str]:
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stderr.decode(errors="replace")


async def recorded_versions(connection: asyncpg.Connection) -> list[str] | None:
    """The rows of alembic_version, or None while the table does not exist."""
    if await connection.fetchval("SELECT to_regclass('alembic_version')") is None:
        return None
    return [row[0] for row in await connection.fetch("SELECT version_num FROM alembic_version")]


async def waiters_on_migration_lock(connection: asyncpg.Connection) -> int:
    # A bigint advisory key shows in pg_locks as classid (high half) and objid (low half).
    return await connection.fetchval(
        """SELECT count(*) FROM pg_locks
           WHERE locktype = 'advisory' AND NOT granted AND objsubid = 1
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND classid::bigint = $1 AND objid::bigint = $2""",
        (MIGRATION_LOCK_KEY >> 32) & 0xFFFFFFFF,
        MIGRATION_LOCK_KEY & 0xFFFFFFFF,
    )


@pytest.fixture
async def empty_postgres_database(postgres_server: PostgresServer | None) -> Any:
    server = require_postgres(postgres_server)
    name = await server.create_database()
    yield server.url_for(name)
    await server.drop_database(name)


class TestReplicasMigratingAtOnce:
    async def test_four_concurrent_upgrades_all_succeed_and_migrate_once(
        self, empty_postgres_database: str
    ):
        url = empty_postgres_database
        processes = [await start_upgrade(url) for _ in range(4)]
        results = await asyncio.gather(*(finish(process) for process in processes))

        assert [code for code, _ in results] == [0] * 4, [err for _, err in results]
        connection = await asyncpg.connect(asyncpg_dsn(make_url(url)))
        try:
            assert await recorded_versions(connection) == [head_revision()]
        finally:
            await connection.close()
        diff, _, _ = await inspect_database(url)
        assert diff == []

    async def test_upgrades_queue_behind_the_migration_lock_then_migrate_once(
        self, empty_postgres_database: str
    ):
        # Holding the lock lines four upgrades up at the same point, so they truly overlap.
        url = empty_postgres_database
        holder = await asyncpg.connect(asyncpg_dsn(make_url(url)))
        processes: list[asyncio.subprocess.Process] = []
        try:
            await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
            processes = [await start_upgrade(url) for _ in range(4)]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while await waiters_on_migration_lock(holder) < len(processes):
                finished = [p.returncode for p in processes if p.returncode is not None]
                assert not finished, "an upgrade ran while another held the lock"
                assert loop.time() < deadline, "the upgrades never queued for the lock"
                await asyncio.sleep(0.05)
            assert [p.returncode for p in processes] == [None] * 4
            assert await recorded_versions(holder) is None

            await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
            results = await asyncio.gather(*(finish(process) for process in processes))

            assert [code for code, _ in results] == [0] * 4, [err for _, err in results]
            assert await recorded_versions(holder) == [head_revision()]
        finally:
            for process in processes:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            await holder.close()


ACCOUNTS = sa.table(
    "app_user",
    sa.column("id", sa.Uuid()),
    sa.column("username", sa.String()),
    sa.column("hashed_password", sa.String()),
    sa.column("is_admin", sa.Boolean()),
    sa.column("role", sa.String()),
    sa.column("is_active", sa.Boolean()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


async def run_on(url: str, statement: Any) -> list[Any]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(statement)
            return list(result) if result.returns_rows else []
    finally:
        await engine.dispose()


def check_roles_follow_the_admin_flag(url: str) -> None:
    """Revision 0007 maps is_admin to a role, and its downgrade maps the role back."""
    config = alembic_config(url)
    command.upgrade(config, "0006")
    flags = {"boss": (True, True), "dormant.boss": (True, False), "jane": (False, True)}
    asyncio.run(
        run_on(
            url,
            sa.insert(ACCOUNTS).values(
                [
                    {
                        "id": uuid.uuid4(),
                        "username": name,
                        "hashed_password": "h",
                        "is_admin": is_admin,
                        "is_active": is_active,
                        "created_at": datetime.now(UTC),
                    }
                    for name, (is_admin, is_active) in flags.items()
                ]
            ),
        )
    )

    command.upgrade(config, "0007")
    roles = asyncio.run(run_on(url, sa.select(ACCOUNTS.c.username, ACCOUNTS.c.role)))
    assert dict(roles) == {"boss": "admin", "dormant.boss": "admin", "jane": "user"}
    asyncio.run(run_on(url, sa.insert(ACCOUNTS).values(**auditor_row())))
    with pytest.raises(IntegrityError):  # the CHECK constraint: no other role
        asyncio.run(run_on(url, sa.update(ACCOUNTS).values(role="root")))

    command.downgrade(config, "0006")
    columns = (ACCOUNTS.c.username, ACCOUNTS.c.is_admin, ACCOUNTS.c.is_active)
    rows = {
        name: (is_admin, is_active)
        for name, is_admin, is_active in asyncio.run(run_on(url, sa.select(*columns)))
    }
    assert rows == {**flags, "audit.or": (False, True)}


def auditor_row() -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "username": "audit.or",
        "hashed_password": "h",
        "role": "auditor",
        "is_active": True,
        "created_at": datetime.now(UTC),
    }


def test_sqlite_roles_follow_the_admin_flag_up_and_down(tmp_path: Path):
    check_roles_follow_the_admin_flag(f"sqlite+aiosqlite:///{tmp_path / 'roles.db'}")


def test_postgres_roles_follow_the_admin_flag_up_and_down(postgres_server: PostgresServer | None):
    server = require_postgres(postgres_server)
    name = asyncio.run(server.create_database())
    try:
        check_roles_follow_the_admin_flag(server.url_for(name))
    finally:
        asyncio.run(server.drop_database(name))


# Revision 0009 (sign-ins): the refresh-token families of before become sign-ins.
_user = sa.table(
    "app_user",
    sa.column("id", sa.Uuid()),
    sa.column("username", sa.String()),
    sa.column("hashed_password", sa.String()),
    sa.column("is_admin", sa.Boolean()),
    sa.column("is_active", sa.Boolean()),
    sa.column("token_version", sa.Integer()),
    sa.column("created_at", UTCDateTime()),
)
_refresh_token = sa.table(
    "refresh_token",
    *(sa.column(name, sa.Uuid()) for name in ("id", "user_id", "family_id")),
    sa.column("token_version", sa.Integer()),
    sa.column("token_hash", sa.String()),
    *(sa.column(name, UTCDateTime()) for name in ("created_at", "expires_at", "used_at")),
    sa.column("revoked_at", UTCDateTime()),
)


async def add_families_before_sign_ins(url: str) -> tuple[uuid.UUID, dict[str, str]]:
    """An account with two sign-ins made before revision 0009 (a live family of two tokens, one
    spent, and a signed-out one); its id and the raw refresh tokens by name."""
    now = datetime.now(UTC)
    user_id, live, ended = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    raw = {name: f"{name}-{uuid.uuid4().hex}" for name in ("spent", "newest", "signed_out")}
    rows = [
        (live, "spent", now - timedelta(days=1), now, None),
        (live, "newest", now, None, None),
        (ended, "signed_out", now - timedelta(days=2), None, now),
    ]
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                _user.insert().values(
                    id=user_id,
                    username="jane.doe",
                    hashed_password="-",  # never signs in with a password here
                    is_admin=False,
                    is_active=True,
                    token_version=0,
                    created_at=now,
                )
            )
            for family, name, created_at, used_at, revoked_at in rows:
                await connection.execute(
                    _refresh_token.insert().values(
                        id=uuid.uuid4(),
                        user_id=user_id,
                        family_id=family,
                        token_version=0,
                        token_hash=hash_refresh_token(raw[name]),
                        created_at=created_at,
                        expires_at=created_at + timedelta(days=7),
                        used_at=used_at,
                        revoked_at=revoked_at,
                    )
                )
    finally:
        await engine.dispose()
    return user_id, raw


async def check_families_became_sign_ins(url: str, user_id: uuid.UUID, raw: dict[str, str]) -> None:
    settings = make_settings(url)
    async with running(create_app(settings)) as app:
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://t") as client:
            async with app.state.database.sessions() as session:
                rows = (await session.execute(sa.select(SignIn))).scalars().all()
            assert {row.user_id for row in rows} == {user_id} and len(rows) == 2
            # The signed-out family is a revoked sign-in, the other a live one.
            (live,) = [row for row in rows if row.revoked_at is None]
            week = datetime.now(UTC) + timedelta(days=7)
            assert abs((live.expires_at - week).total_seconds()) < 60  # its newest token's

            # The live sign-in's newest refresh token gives an access token that works.
            renewed = await client.post("/auth/refresh", json={"refresh_token": raw["newest"]})
            assert renewed.status_code == 200, renewed.text
            headers = {"Authorization": f"Bearer {renewed.json()['access_token']}"}
            me = await client.get("/users/me", headers=headers)
            assert me.status_code == 200 and me.json()["id"] == str(user_id)
            for signed_out in ("signed_out", "spent"):  # a revoked one, and a reused one
                response = await client.post(
                    "/auth/refresh", json={"refresh_token": raw[signed_out]}
                )
                assert response.status_code == 401
            # Replaying the spent token ended the live sign-in too (reuse detection).
            assert (await client.get("/users/me", headers=headers)).status_code == 401


def check_refresh_tokens_of_before_keep_working(url: str) -> None:
    config = alembic_config(url)
    command.upgrade(config, "0006")
    user_id, raw = asyncio.run(add_families_before_sign_ins(url))
    command.upgrade(config, "head")
    asyncio.run(check_families_became_sign_ins(url, user_id, raw))


def test_sqlite_refresh_tokens_of_before_sign_ins_keep_working(tmp_path: Path):
    check_refresh_tokens_of_before_keep_working(f"sqlite+aiosqlite:///{tmp_path / 's.db'}")


def test_postgres_refresh_tokens_of_before_sign_ins_keep_working(
    postgres_server: PostgresServer | None,
):
    server = require_postgres(postgres_server)
    name = asyncio.run(server.create_database())
    try:
        check_refresh_tokens_of_before_keep_working(server.url_for(name))
    finally:
        asyncio.run(server.drop_database(name))
