"""The import through COPY on PostgreSQL (csv.staging): the same answers, records and audit
rows as the row-by-row path that SQLite keeps (csv.io, csv.format)."""

import asyncio
import csv
import io
import os
import random
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import select, text

from app.employees.csv import format as csv_format
from app.employees.csv import io as csv_io
from app.employees.csv import staging
from app.employees.history import crud as history
from app.employees.history.models import EmployeeAudit, SystemActor
from app.employees.models import Employee, EmployeeCreate
from bench.bulk import write_csv
from tests.conftest import employee_payload

pytestmark = pytest.mark.postgres_only

HEADER = "emp_id,emp_name,city,country,emp_dob"
IMPORT = "/employees/import"
EXPORT = "/employees/export.csv"
GOOD = "Ada,London,United Kingdom,1985-12-10"

# Every kind of error the import knows, with spellings only pydantic's parsers accept next to
# them (they must import as pydantic reads them), several errors on one row, and a stored emp_id.
EVERY_ERROR = [
    f"1,{GOOD}",
    f"abc,{GOOD}",  # not an integer
    f"0,{GOOD}",  # below the range
    f"-5,{GOOD}",
    f"2147483648,{GOOD}",  # above it
    f"99999999999999999999,{GOOD}",
    f"1.5,{GOOD}",
    f"١٢,{GOOD}",  # digits, but not ASCII ones
    f"+7,{GOOD}",  # valid: pydantic reads 7
    f" 8 ,{GOOD}",  # valid: 8
    f"1_000,{GOOD}",  # valid: 1000
    f"0042,{GOOD}",  # valid: 42
    f"42,{GOOD}",  # emp_id 42 again (line of 0042)
    f"9,{'x' * 101},London,United Kingdom,1985-12-10",  # too long
    f"10,{'x' * 100} ,London,United Kingdom,1985-12-10",  # too long before trimming
    f"11,{'x' * 100},London,United Kingdom,1985-12-10",  # exactly 100: valid
    "12,,London,United Kingdom,1985-12-10",  # empty
    "13, ,London,United Kingdom,1985-12-10",  # blank
    "14,\u00a0\u3000,London,United Kingdom,1985-12-10",  # blank in Unicode spaces
    "15,Ada\x01,London,United Kingdom,1985-12-10",  # control character
    "16,Ada\x00x,London,United Kingdom,1985-12-10",  # NUL
    "17,Ada\u0085,London,United Kingdom,1985-12-10",  # C1 control
    "18,\u2003Ada Lovelace\u00a0,\tLondon,United Kingdom,1985-12-10",  # trimmed; tab refused
    "19,Ada,London,United Kingdom,1985-02-30",  # no such day
    "20,Ada,London,United Kingdom,1985/12/10",
    "21,Ada,London,United Kingdom,0000-01-01",
    "22,Ada,London,United Kingdom,",
    "23,Ada,London,United Kingdom,1985-12-10T01:00:00",
    "24,Ada,London,United Kingdom,19851210",
    "25,Ada,London,United Kingdom,1985-12-10T00:00:00",  # valid
    "26,Ada,London,United Kingdom,1899-12-31",  # before 1900
    "27,Ada,London,United Kingdom,0001-01-01",
    "28,Ada,London,United Kingdom,3000-01-01",  # in the future
    "29,Ada,London,United Kingdom,1900-01-01",  # valid: the first day allowed
    "x,,  ,Ada\x02,2999-12-31",  # an error in every field
    f"30,{GOOD}",
    f"30,{GOOD}",  # in the file twice
    f"30,{GOOD}",  # and three times
    f"31,{GOOD},extra",  # too many fields
    "32,Ada",  # too few
    '33,"Grace\nHopper",New York,United States,1906-12-09',  # one record on two lines
    "34,'=1+1,London,United Kingdom,1985-12-10",  # a formula, exported as text: valid
    f"5000,{GOOD}",  # stored already
]


# Pieces of cells, glued at random: spellings both parsers read, and ones they refuse.
PIECES = ["1", "0", "-1", "+3", " 4", "007", "1_2", "1.0", "2147483648", "", " ", "\u00a0", "x"]
PIECES += ["'=1", "=1", "'", "a,b", 'q"q', "é", "\x00", "\x01", "\t", "\x85", "\u2028", "\n"]
PIECES += ["1985-12-10", "1985-12-10T00:00:00", "1899-12-31", "2999-01-01", "0000-01-01"]
PIECES += ["19851210", "x" * 100, " " + "x" * 99 + " ", "٣", "9" * 12]


def random_file(generator: random.Random) -> bytes:
    def cell() -> str:
        return "".join(generator.choice(PIECES) for _ in range(generator.choice([1, 1, 2])))

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADER.split(","))
    for _ in range(generator.randint(0, 25)):
        kind = generator.random()
        if kind < 0.7:
            emp_id = generator.choice(["1", "2", "3", "+2", "02", cell()])
            writer.writerow([emp_id, cell(), cell() if kind < 0.3 else "B", "C", cell()])
        elif kind < 0.8:
            writer.writerow([cell() for _ in range(generator.choice([1, 4, 6]))])
        else:
            writer.writerow(["9", "A", "B", "C", "1990-01-01"])
    data = buffer.getvalue().encode()
    return data + b"\xff\n" if generator.random() < 0.05 else data


def csv_bytes(*rows: str, header: str = HEADER) -> bytes:
    return ("\r\n".join([header, *rows]) + "\r\n").encode()


async def old_answer(session: Any, data: bytes, max_rows: int | None = None) -> dict[str, Any]:
    """What the row-by-row check answers (SQLite's path, run here on PostgreSQL)."""
    items = csv_format.read_rows(csv_format.decode_lines(io.BytesIO(data)))
    validation = await csv_io.validate(session=session, items=items, max_rows=max_rows)
    if validation.error_total:
        return csv_io.ImportRejectedError(validation).body()
    return {"valid": validation.count}


async def new_answer(session: Any, data: bytes, max_rows: int | None = None) -> dict[str, Any]:
    cells = csv_format.read_cells(csv_format.decode_lines(io.BytesIO(data)))
    try:
        count = await staging.import_cells(
            session=session, items=cells, actor=SystemActor("test"), max_rows=max_rows, dry_run=True
        )
    except csv_io.ImportRejectedError as rejected:
        return rejected.body()
    return {"valid": count}


async def both_answers(sessionmaker: Any, data: bytes, **options: Any) -> list[dict[str, Any]]:
    answers = []
    for answer in (old_answer, new_answer):
        async with sessionmaker() as session:
            answers.append(await answer(session, data, **options))
    return answers


async def table_contents(sessionmaker: Any) -> tuple[list[Any], list[Any]]:
    async with sessionmaker() as session:
        employees = await session.execute(select(Employee).order_by(Employee.emp_id))
        audits = await session.execute(select(EmployeeAudit).order_by(EmployeeAudit.id))
        return [e.model_dump() for e in employees.scalars()], [
            a.model_dump() for a in audits.scalars()
        ]


class TestSameAnswers:
    async def test_a_file_with_every_kind_of_error(self, make_employees, sessionmaker):
        await make_employees({"emp_id": 5000})
        data = csv_bytes(*EVERY_ERROR) + "35,Zoë,B,C,1990-01-01\r\n".encode("latin-1")

        old, new = await both_answers(sessionmaker, data)

        assert new == old
        kinds = {item["type"] for item in old["detail"]}
        assert kinds >= {
            "int_parsing",
            "greater_than_equal",
            "less_than_equal",
            "string_too_short",
            "string_too_long",
            "value_error",
            "date_from_datetime_parsing",
            "date_parsing",
            "date_from_datetime_inexact",
            "duplicate_in_file",
            "already_exists",
            "csv_columns",
            "csv_syntax",
        }

    @pytest.mark.parametrize(
        "data",
        [
            csv_bytes(f"1,{GOOD}", header="id,name,city,country,dob"),
            csv_bytes(),
            b"",
            csv_bytes('1,"Ada,London,United Kingdom,1985-12-10'),
            "\ufeff".encode() + csv_bytes(f"1,{GOOD}", "1,Ada,,B,1990-01-01"),
            b"\xff\xfe" + csv_bytes(f"1,{GOOD}"),
        ],
        ids=["header", "no-rows", "empty", "open-quote", "bom", "bad-first-bytes"],
    )
    async def test_files_refused_whole(self, sessionmaker, data):
        old, new = await both_answers(sessionmaker, data)

        assert new == old

    async def test_the_cap_keeps_the_same_errors_and_count(
        self, make_employees, sessionmaker, monkeypatch
    ):
        # Stored emp_ids are met a batch at a time: which errors are listed depends on that.
        monkeypatch.setattr(csv_io, "BATCH_SIZE", 3)
        monkeypatch.setattr(csv_io, "MAX_REPORTED_ERRORS", 5)
        await make_employees(*({"emp_id": n} for n in (1, 2, 7, 11)))
        rows = [f"{n},{'' if n % 4 == 0 else 'Ada'},B,C,1990-01-01" for n in range(1, 16)]

        old, new = await both_answers(sessionmaker, csv_bytes(*rows, f"3,{GOOD}"))

        assert new == old
        assert old["detail"][-1]["type"] == "too_many_errors"

    @pytest.mark.parametrize("max_rows", [1, 3, 4, 10])
    async def test_the_row_limit_stops_where_it_did(self, make_employees, sessionmaker, max_rows):
        await make_employees({"emp_id": 2})
        rows = ["1,A,B,C,1990-01-01", "2,A,B,C,1990-01-01", "x,A,B,C,1990-01-01"]
        rows += ["4,A,B,C,1990-01-01", "4,A,B,C,1990-01-01", "5,,B,C,1990-01-01", "6,A,B"]

        old, new = await both_answers(sessionmaker, csv_bytes(*rows), max_rows=max_rows)

        assert new == old

    async def test_random_files_answer_alike(self, make_employees, sessionmaker):
        await make_employees({"emp_id": 3})
        generator = random.Random(20261204)  # reproducible files, not secrets
        for _ in range(60):
            data = random_file(generator)
            max_rows = generator.choice([None, None, 3])

            old, new = await both_answers(sessionmaker, data, max_rows=max_rows)

            assert new == old, data

    async def test_a_valid_file_counts_the_same(self, sessionmaker):
        old, new = await both_answers(sessionmaker, csv_bytes(f"1,{GOOD}", f"+2,{GOOD}"))

        assert new == old == {"valid": 2}

    async def test_the_api_answers_as_the_old_path(
        self, admin_user_client, make_employees, sessionmaker
    ):
        await make_employees({"emp_id": 5000})
        data = csv_bytes(*EVERY_ERROR)
        async with sessionmaker() as session:
            old = await old_answer(session, data)

        response = await admin_user_client.post(IMPORT, files={"file": ("e.csv", data, "text/csv")})

        assert response.status_code == 422
        assert response.json() == old


class TestWrites:
    async def test_records_and_audit_rows_are_those_of_the_models(
        self, admin_user_client, admin_user, sessionmaker
    ):
        rows = [
            "7,\u2003Ada Lovelace\u00a0,London ,United Kingdom,1985-12-10",
            '+8,\'=1+1,"Paris, France",France,1985-12-10T00:00:00',
            "0009,Grace,Oslo,Norway,1900-01-01",
        ]
        data = csv_bytes(*rows)

        response = await admin_user_client.post(
            IMPORT, files={"file": ("e.csv", data, "text/csv")}, headers={"X-Request-ID": "r-1"}
        )

        assert response.status_code == 201, response.text
        assert response.json() == {"created": 3}
        parsed = [
            item.data
            for item in csv_format.read_rows(csv_format.decode_lines(io.BytesIO(data)))
            if isinstance(item, csv_format.Row)
        ]
        employees, audits = await table_contents(sessionmaker)
        fields = list(EmployeeCreate.model_fields)
        assert [{f: e[f] for f in fields} for e in employees] == [p.model_dump() for p in parsed]
        assert {(e["version"], e["created_at"] == e["updated_at"]) for e in employees} == {
            (1, True)
        }
        assert [a["changes"] for a in audits] == [
            history.diff(None, history.snapshot(p)) for p in parsed
        ]
        by_id = {e["id"]: e for e in employees}
        for audit in audits:
            employee = by_id[audit["employee_id"]]
            assert (audit["emp_id"], audit["version"], audit["action"]) == (
                employee["emp_id"],
                1,
                "create",
            )
            assert (audit["actor_id"], audit["actor_username"], audit["request_id"]) == (
                admin_user.id,
                admin_user.username,
                "r-1",
            )
            assert audit["changed_at"] == employee["created_at"]

    async def test_a_failing_file_leaves_both_tables_as_they_were(
        self, admin_user_client, make_employees, sessionmaker
    ):
        await admin_user_client.post(
            IMPORT, files={"file": ("a.csv", csv_bytes("1,A,B,C,1990-01-01"), "text/csv")}
        )
        before = await table_contents(sessionmaker)
        rows = [f"{n},A,B,C,1990-01-01" for n in range(2, 2000)] + ["2001,A,B,C,2999-01-01"]

        response = await admin_user_client.post(
            IMPORT, files={"file": ("b.csv", csv_bytes(*rows), "text/csv")}
        )

        assert response.status_code == 422
        assert await table_contents(sessionmaker) == before

    async def test_an_emp_id_taken_after_the_check_is_409_and_nothing_is_written(
        self, admin_user_client, sessionmaker, monkeypatch
    ):
        # Another writer commits emp_id 2 between the check and the write: the key decides.
        check = staging.check

        async def then_a_create(driver: Any, **options: Any) -> Any:
            validation = await check(driver, **options)
            async with sessionmaker() as other:
                now = datetime.now(UTC)
                other.add(
                    Employee(
                        emp_id=2,
                        emp_name="C",
                        city="C",
                        country="C",
                        emp_dob=date(1990, 1, 1),
                        created_at=now,
                        updated_at=now,
                    )
                )
                await other.commit()
            return validation

        monkeypatch.setattr(staging, "check", then_a_create)
        data = csv_bytes("1,A,B,C,1990-01-01", "2,D,E,F,1990-01-01")

        response = await admin_user_client.post(IMPORT, files={"file": ("e.csv", data, "text/csv")})

        assert response.status_code == 409
        assert "nothing was imported" in response.json()["detail"]
        employees, audits = await table_contents(sessionmaker)
        assert [(e["emp_id"], e["emp_name"]) for e in employees] == [(2, "C")]
        assert audits == []

    async def test_no_staging_table_outlives_the_import(self, admin_user_client, sessionmaker):
        await admin_user_client.post(
            IMPORT, files={"file": ("e.csv", csv_bytes("1,A,B,C,1990-01-01"), "text/csv")}
        )
        async with sessionmaker() as session:
            left = "SELECT count(*) FROM pg_class WHERE relname = 'employee_import'"
            assert (await session.execute(text(left))).scalar_one() == 0


# `python -m app ARGS`, printing its own peak RSS (VmHWM) last on stderr: `wait4`'s ru_maxrss
# would count this test process's peak from before the exec as the child's.
MEASURED = (
    "import atexit, runpy, sys; from bench.bulk import peak_rss_kb; "
    "atexit.register(lambda: print(peak_rss_kb(), file=sys.stderr)); "
    "sys.argv = ['app', *sys.argv[1:]]; runpy.run_module('app', run_name='__main__')"
)


def checked_peak_rss_kb(url: str, path: Path, rows: int) -> int:
    """`python -m app import-csv --dry-run` of `rows` generated employees: its peak RSS."""
    write_csv(path, rows)
    result = subprocess.run(
        [sys.executable, "-c", MEASURED, "import-csv", "--dry-run", str(path)],
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-1000:]
    return int(result.stderr.splitlines()[-1])


@pytest.mark.slow
@pytest.mark.ops
async def test_peak_memory_does_not_grow_with_the_file(database_url, tmp_path):
    """Streamed: ten times the rows, the same peak. The row-by-row check held each emp_id seen,
    about 125 bytes a row: 11 MB more here. (A dry run: the same reading, copying and checking,
    without the minutes of index upkeep a write of 100,000 rows costs.)"""
    small, large = [
        await anyio.to_thread.run_sync(checked_peak_rss_kb, database_url, tmp_path / name, n)
        for name, n in (("small.csv", 10_000), ("large.csv", 100_000))
    ]

    assert large - small < 2 * 1024, (small, large)


class TestConcurrentImports:
    """Racing writers: one winner per emp_id, and every record with exactly its audit row."""

    async def assert_whole(self, sessionmaker: Any) -> list[int]:
        employees, audits = await table_contents(sessionmaker)
        assert sorted((a["employee_id"], a["emp_id"]) for a in audits) == sorted(
            (e["id"], e["emp_id"]) for e in employees
        )
        return [e["emp_id"] for e in employees]

    async def test_imports_in_opposite_orders_one_wins_whole(self, admin_user_client, sessionmaker):
        # Each waits on emp_ids the other wrote first: PostgreSQL ends the deadlock, a 409.
        ids = list(range(1, 301))
        bodies = {
            name: csv_bytes(*(f"{n},{name} {n},B,C,1990-01-01" for n in order))
            for name, order in (("A", ids), ("B", ids[::-1]))
        }

        responses = await asyncio.gather(
            *(
                admin_user_client.post(IMPORT, files={"file": ("e.csv", data, "text/csv")})
                for data in bodies.values()
            )
        )

        codes = sorted(r.status_code for r in responses)
        assert codes in ([201, 409], [201, 422]), [r.text for r in responses]
        assert await self.assert_whole(sessionmaker) == ids

    async def test_creates_racing_an_import_leave_no_half_written_file(
        self, admin_user_client, sessionmaker
    ):
        ids = range(500, 700)
        data = csv_bytes(*(f"{n},I {n},B,C,1990-01-01" for n in ids))
        creates = [
            admin_user_client.post("/employees/", json=employee_payload(n, emp_name=f"C {n}"))
            for n in ids[::7]
        ]

        imported, *created = await asyncio.gather(
            admin_user_client.post(IMPORT, files={"file": ("e.csv", data, "text/csv")}), *creates
        )

        stored = await self.assert_whole(sessionmaker)
        if imported.status_code == 201:
            assert stored == list(ids)
            assert {c.status_code for c in created} == {409}
        else:
            assert imported.status_code in (409, 422), imported.text
            assert stored == sorted(c.json()["emp_id"] for c in created if c.status_code == 201)
