"""`python -m app` data commands: seed-demo, import-csv, export-csv and check."""

import asyncio
import csv
import io
import socket
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import cli, demo
from app.cli.data import CommandError
from app.db.engine import create_engine, create_sessionmaker
from app.employees.history.models import EmployeeAudit
from app.employees.models import Employee
from tests.conftest import SECRET, make_settings
from tests.pg import PostgresServer, alembic_config

HEADER = "emp_id,emp_name,city,country,emp_dob"


@pytest.fixture
def database(
    backend: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres_server: PostgresServer | None,
    postgres_template: str | None,
) -> Any:
    """A migrated database of its own, named by DATABASE_URL; no signing key in sight."""
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.delenv("JWT_SECRET_KEY", raising=False)
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
        command.upgrade(alembic_config(url), "head")
        monkeypatch.setenv("DATABASE_URL", url)
        yield url
        return
    assert postgres_server is not None
    name = asyncio.run(postgres_server.create_database(template=postgres_template))
    url = postgres_server.url_for(name)
    monkeypatch.setenv("DATABASE_URL", url)
    yield url
    asyncio.run(postgres_server.drop_database(name))


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def contents(url: str) -> tuple[list[Employee], list[EmployeeAudit]]:
    async def load() -> tuple[list[Employee], list[EmployeeAudit]]:
        engine = create_engine(make_settings(url))
        try:
            async with create_sessionmaker(engine)() as session:
                employees = await session.execute(select(Employee).order_by(Employee.emp_id))
                audits = await session.execute(select(EmployeeAudit).order_by(EmployeeAudit.id))
                return list(employees.scalars()), list(audits.scalars())
        finally:
            await engine.dispose()

    return asyncio.run(load())


def write_csv(path: Path, *rows: str) -> Path:
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


class TestSeedDemo:
    def test_one_employee_reads_in_the_singular(self, database):
        assert run("seed-demo", "2").exit_code == 0
        result = run("seed-demo", "1")
        assert result.stdout == "Created 1 demo employee (emp_id 3).\n"

    def test_adds_realistic_employees_with_audit_rows(self, database):
        result = run("seed-demo", "25", "--seed", "3")

        assert result.exit_code == 0, result.output
        assert result.stdout == "Created 25 demo employees (emp_id 1 to 25).\n"
        employees, audits = contents(database)
        assert [e.emp_id for e in employees] == list(range(1, 26))
        assert len({e.emp_name for e in employees}) > 20
        assert len({e.country for e in employees}) > 3
        assert all(e.emp_name and e.city and e.emp_dob.year >= 1955 for e in employees)
        assert {(a.action, a.actor_id, a.actor_username) for a in audits} == {
            ("create", None, "cli:seed-demo")
        }
        assert len(audits) == 25

    def test_numbers_after_the_highest_emp_id_and_the_seed_repeats(self, database):
        run("seed-demo", "5", "--seed", "11")

        result = run("seed-demo", "5", "--seed", "11")

        assert result.exit_code == 0, result.output
        assert "emp_id 6 to 10" in result.stdout
        employees, _ = contents(database)
        first, second = employees[:5], employees[5:]
        assert [(e.emp_name, e.city, e.emp_dob) for e in first] == [
            (e.emp_name, e.city, e.emp_dob) for e in second
        ]

    def test_refuses_a_count_of_zero(self, database):
        result = run("seed-demo", "0")

        assert result.exit_code == 2
        assert contents(database) == ([], [])

    @pytest.mark.postgres_only
    def test_a_large_seed_refreshes_the_planner_statistics(self, database):
        """With autovacuum off, only the seed's own ANALYZE makes the list's estimates right."""
        dsn = database.replace("postgresql+asyncpg", "postgresql")

        async def sql(statement: str) -> Any:
            connection = await asyncpg.connect(dsn)
            try:
                return await connection.fetchval(statement)
            finally:
                await connection.close()

        asyncio.run(sql("ALTER TABLE employee SET (autovacuum_enabled = false)"))

        assert run("seed-demo", "2005", "--seed", "1").exit_code == 0

        assert asyncio.run(sql("SELECT reltuples FROM pg_class WHERE relname = 'employee'")) == 2005

    @pytest.mark.postgres_only
    def test_two_seeds_at_once_write_one_whole_and_refuse_the_other(self, database):
        async def both() -> list[Any]:
            seeds = (demo.seed_demo_rows(300, seed) for seed in (1, 2))
            return await asyncio.gather(*seeds, return_exceptions=True)

        outcomes = asyncio.run(both())

        (written,) = [o for o in outcomes if isinstance(o, tuple)]
        (refused,) = [o for o in outcomes if isinstance(o, Exception)]
        assert written == (1, 300)
        assert isinstance(refused, CommandError) and refused.code == 1
        assert "nothing was written" in str(refused)
        employees, audits = contents(database)
        assert [e.emp_id for e in employees] == list(range(1, 301))
        assert len(audits) == 300


class TestImportCsv:
    def test_imports_every_row_with_audit_rows(self, database, tmp_path):
        path = write_csv(
            tmp_path / "in.csv",
            "1001,Ada Lovelace,London,United Kingdom,1985-12-10",
            '1002,"Hopper, Grace",New York,United States,1906-12-09',
        )

        result = run("import-csv", str(path))

        assert result.exit_code == 0, result.output
        assert result.stdout == "Imported 2 employees.\n"
        employees, audits = contents(database)
        assert [(e.emp_id, e.emp_name) for e in employees] == [
            (1001, "Ada Lovelace"),
            (1002, "Hopper, Grace"),
        ]
        assert [(a.emp_id, a.actor_username, a.actor_id) for a in audits] == [
            (1001, "cli:import-csv", None),
            (1002, "cli:import-csv", None),
        ]

    def test_bad_rows_are_listed_and_nothing_is_written(self, database, tmp_path):
        path = write_csv(
            tmp_path / "in.csv",
            "1001,Ada Lovelace,London,United Kingdom,1985-12-10",
            "1002,Grace Hopper,New York,United States,2999-01-01",
            "1001,Again,Paris,France,1990-01-01",
        )

        result = run("import-csv", str(path))

        assert result.exit_code == 2
        assert result.stderr.splitlines()[-3:] == [
            "line 3, emp_dob: must not be in the future",
            "line 4, emp_id: emp_id 1001 is already on line 2 of this file",
            "Error: 2 errors; nothing was written",
        ]
        assert result.stdout == ""
        assert contents(database) == ([], [])

    def test_rows_already_stored_are_refused(self, database, tmp_path):
        run("seed-demo", "3")
        path = write_csv(tmp_path / "in.csv", "2,Ada Lovelace,London,United Kingdom,1985-12-10")

        result = run("import-csv", str(path))

        assert result.exit_code == 2
        assert "line 2, emp_id: an employee with emp_id 2 already exists" in result.stderr
        assert len(contents(database)[0]) == 3

    def test_only_the_first_50_errors_are_printed(self, database, tmp_path):
        path = write_csv(tmp_path / "in.csv", *(f"{n},,B,C,1990-01-01" for n in range(1, 81)))

        result = run("import-csv", str(path))

        assert result.exit_code == 2
        lines = result.stderr.splitlines()
        assert sum(line.startswith("line ") for line in lines) == 50
        assert "... and 30 more errors" in lines
        assert lines[-1] == "Error: 80 errors; nothing was written"

    def test_one_row_and_one_error_read_in_the_singular(self, database, tmp_path):
        one = write_csv(tmp_path / "one.csv", "1,A,B,C,1990-01-01")
        bad = write_csv(tmp_path / "bad.csv", "2,D,E,F,2999-01-01")

        dry, refused, imported = (
            run("import-csv", str(path), *flags)
            for path, flags in ((one, ["--dry-run"]), (bad, []), (one, []))
        )

        assert dry.stdout == "The 1 row is valid; nothing was written (--dry-run).\n"
        assert refused.stderr.splitlines()[-1] == "Error: 1 error; nothing was written"
        assert imported.stdout == "Imported 1 employee.\n"

    def test_more_errors_than_shown_are_counted_in_the_singular_too(self, database, tmp_path):
        path = write_csv(tmp_path / "in.csv", *(f"{n},,B,C,1990-01-01" for n in range(1, 52)))
        result = run("import-csv", str(path))
        assert "... and 1 more error" in result.stderr.splitlines()

    def test_dry_run_is_one_flag(self):
        result = run("import-csv", "--help")
        assert "--dry-run" in result.output and "--no-dry-run" not in result.output

    def test_dry_run_writes_nothing(self, database, tmp_path):
        path = write_csv(tmp_path / "in.csv", "1,A,B,C,1990-01-01", "2,D,E,F,1990-01-01")

        result = run("import-csv", str(path), "--dry-run")

        assert result.exit_code == 0, result.output
        assert result.stdout == "All 2 rows are valid; nothing was written (--dry-run).\n"
        assert contents(database) == ([], [])

    def test_a_missing_file_is_refused(self, database, tmp_path):
        result = run("import-csv", str(tmp_path / "nope.csv"))

        assert result.exit_code == 2
        # The message is boxed and wrapped at the terminal's width (a long temporary path).
        assert "does not exist" in " ".join(result.output.replace("│", " ").split())


class TestExportCsv:
    def test_writes_filtered_sorted_csv_to_stdout(self, database, tmp_path):
        path = write_csv(
            tmp_path / "in.csv",
            "1,Cleo,Paris,France,1990-01-01",
            "2,Abel,Lyon,France,1990-01-02",
            "3,Bea,Oslo,Norway,1990-01-03",
            "4,Dan,Nice,France,1990-01-04",
        )
        run("import-csv", str(path))

        result = run("export-csv", "--country", "fra", "--sort-by", "emp_name", "--order", "desc")

        assert result.exit_code == 0, result.output
        rows = list(csv.reader(io.StringIO(result.stdout)))
        assert rows[0] == HEADER.split(",")
        assert [row[1] for row in rows[1:]] == ["Dan", "Cleo", "Abel"]
        assert result.stderr.endswith("Exported 3 employees.\n")

    def test_writes_a_file_that_imports_again(self, database, tmp_path):
        run("seed-demo", "1200", "--seed", "5")  # more than one batch of 1000
        target = tmp_path / "out.csv"

        result = run("export-csv", "--output", str(target))

        assert result.exit_code == 0, result.output
        assert result.stdout == ""
        lines = target.read_text(encoding="utf-8").splitlines()
        assert len(lines) == 1201
        assert [int(line.split(",", 1)[0]) for line in lines[1:]] == list(range(1, 1201))
        dry = run("import-csv", str(target), "--dry-run")
        assert dry.exit_code == 2  # every emp_id is already stored
        assert "1200 errors" in dry.stderr


class TestCheck:
    def test_ok_exits_zero(self, database, monkeypatch):
        monkeypatch.setenv("JWT_SECRET_KEY", SECRET)

        result = run("check")

        assert result.exit_code == 0, result.output
        assert result.stdout == "OK: configuration valid, database reachable, migrations at head.\n"

    def test_bad_configuration_exits_2_with_one_line(self, database):
        result = run("check")  # no JWT_SECRET_KEY

        assert result.exit_code == 2
        assert result.stderr == (
            "Error: JWT_SECRET_KEY: is required (set it in the environment or in .env)\n"
        )

    def test_unmigrated_database_exits_1(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        (tmp_path / "empty.db").touch()
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
        monkeypatch.setenv("JWT_SECRET_KEY", SECRET)

        result = run("check")

        assert result.exit_code == 1
        assert "not at the head revision" in result.stderr

    def test_unreachable_database_exits_1(self, tmp_path, monkeypatch):
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("DATABASE_URL", f"postgresql://nobody@127.0.0.1:{port}/none")
        monkeypatch.setenv("JWT_SECRET_KEY", SECRET)

        result = run("check")

        assert result.exit_code == 1
        assert result.stderr == "Error: the database is unreachable\n"

    def test_missing_sqlite_file_exits_1(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'missing.db'}")
        monkeypatch.setenv("JWT_SECRET_KEY", SECRET)

        result = run("check")

        assert result.exit_code == 1
        assert "no database file" in result.stderr
        assert not (tmp_path / "missing.db").exists()
