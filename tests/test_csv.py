"""CSV over HTTP: GET /employees/export.csv (streamed), POST /employees/import (all or none)."""

import csv
import io
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy import text as sql_text

from app.employees import crud, listing
from app.employees.csv import format as csv_format
from app.employees.csv import io as csv_io
from app.employees.history.models import EmployeeAudit
from app.employees.models import Employee

EXPORT = "/employees/export.csv"
IMPORT = "/employees/import"
HEADER = "emp_id,emp_name,city,country,emp_dob"


def upload(text: str | bytes) -> dict[str, Any]:
    data = text.encode() if isinstance(text, str) else text
    return {"file": ("employees.csv", data, "text/csv")}


def csv_file(*rows: str) -> str:
    return "\r\n".join([HEADER, *rows]) + "\r\n"


async def stored(sessionmaker: Any) -> tuple[list[Employee], list[EmployeeAudit]]:
    async with sessionmaker() as session:
        employees = (await session.execute(select(Employee).order_by(Employee.emp_id))).scalars()
        audits = (await session.execute(select(EmployeeAudit).order_by(EmployeeAudit.id))).scalars()
        return list(employees), list(audits)


async def employee_count(sessionmaker: Any) -> int:
    async with sessionmaker() as session:
        return (await session.execute(select(func.count()).select_from(Employee))).scalar_one()


async def export_then_import_elsewhere(client: Any, sessionmaker: Any) -> Any:
    """Export every record, empty the table, and import the export: the import's answer."""
    exported = (await client.get(EXPORT)).text
    async with sessionmaker() as session:
        await session.execute(Employee.__table__.delete())  # type: ignore[attr-defined]
        await session.commit()
    return await client.post(IMPORT, files=upload(exported))


class TestExportCsv:
    async def test_regular_user_downloads_every_row_as_csv(
        self, normal_user_client, make_employees
    ):
        await make_employees(
            {"emp_id": 2, "emp_name": 'Grace "Amazing" Hopper', "city": "New York, NY"},
            {"emp_id": 1, "emp_name": "Ada Lovelace", "emp_dob": "1815-12-10"},
        )

        response = await normal_user_client.get(EXPORT)

        assert response.status_code == 200
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.headers["content-disposition"] == 'attachment; filename="employees.csv"'
        assert list(csv.reader(io.StringIO(response.text))) == [
            HEADER.split(","),
            ["1", "Ada Lovelace", "London", "United Kingdom", "1815-12-10"],
            ["2", 'Grace "Amazing" Hopper', "New York, NY", "United Kingdom", "1985-12-10"],
        ]

    async def test_honours_filters_and_sort_across_many_batches(
        self, normal_user_client, make_employees, monkeypatch, backend
    ):
        monkeypatch.setattr(csv_io, "BATCH_SIZE", 3)
        await make_employees(
            *(
                {"emp_id": n, "emp_name": f"Name {n % 4}", "city": "Paris" if n % 5 else "Oslo"}
                for n in range(1, 31)
            )
        )
        expected = sorted(
            ((f"Name {n % 4}", n) for n in range(1, 31) if n % 5), reverse=True
        )  # 24 rows: 8 batches of 3

        pages = []
        list_employees = listing.list_employees

        async def spy(**kwargs: Any) -> Any:
            pages.append((kwargs["limit"], kwargs["after"]))
            return await list_employees(**kwargs)

        monkeypatch.setattr(listing, "list_employees", spy)

        response = await normal_user_client.get(
            EXPORT, params={"city": "par", "sort_by": "emp_name", "order": "desc"}
        )

        assert response.status_code == 200
        rows = list(csv.reader(io.StringIO(response.text)))[1:]
        assert [(row[1], int(row[0])) for row in rows] == expected
        if backend in ("postgres", "pgbouncer"):
            return  # one COPY, no pages (tests/test_csv_copy.py)
        # Read in keyset pages of 3, each starting after the last row of the one before.
        assert [limit for limit, _ in pages] == [3] * 8
        assert [after for _, after in pages[1:]] == expected[2:-1:3]

    async def test_empty_table_gives_the_header_only(self, normal_user_client):
        response = await normal_user_client.get(EXPORT)

        assert response.status_code == 200
        assert response.text == HEADER + "\r\n"

    async def test_anonymous_gets_401(self, client):
        response = await client.get(EXPORT)

        assert response.status_code == 401

    async def test_bad_sort_is_422(self, normal_user_client):
        response = await normal_user_client.get(EXPORT, params={"sort_by": "salary"})

        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", "sort_by"]


class TestImportCsv:
    async def test_writes_every_row_with_audit_rows(
        self, admin_user_client, admin_user, sessionmaker
    ):
        text = csv_file(
            "1001,Ada Lovelace,London,United Kingdom,1985-12-10",
            '1002,"Hopper, Grace",New York,United States,1906-12-09',
            "1003,Alan Turing,Wilmslow,United Kingdom,1912-06-23",
        )

        response = await admin_user_client.post(
            IMPORT, files=upload(text), headers={"X-Request-ID": "import-1"}
        )

        assert response.status_code == 201, response.text
        assert response.json() == {"created": 3}
        employees, audits = await stored(sessionmaker)
        assert [(e.emp_id, e.emp_name, e.version) for e in employees] == [
            (1001, "Ada Lovelace", 1),
            (1002, "Hopper, Grace", 1),
            (1003, "Alan Turing", 1),
        ]
        assert [(a.emp_id, a.action, a.actor_id) for a in audits] == [
            (1001, "create", admin_user.id),
            (1002, "create", admin_user.id),
            (1003, "create", admin_user.id),
        ]
        assert {a.request_id for a in audits} == {"import-1"}
        assert audits[1].changes["emp_name"] == {"before": None, "after": "Hopper, Grace"}
        assert {a.employee_id for a in audits} == {e.id for e in employees}

    async def test_imported_rows_are_served_by_the_api(self, admin_user_client):
        text = "\ufeff" + csv_file("7,Ada Lovelace,London,United Kingdom,1985-12-10")

        await admin_user_client.post(IMPORT, files=upload(text))
        response = await admin_user_client.get("/employees/7")

        assert response.status_code == 200
        assert response.json()["emp_dob"] == "1985-12-10"

    async def test_a_bad_row_writes_nothing_and_names_line_and_field(
        self, admin_user_client, sessionmaker
    ):
        text = csv_file(
            "1001,Ada Lovelace,London,United Kingdom,1985-12-10",
            '1002,"Grace\nHopper",New York,United States,1906-12-09',  # one record, lines 3-4
            "1003,Alan Turing,Wilmslow,United Kingdom,3000-01-01",  # line 5
            "abc,,Paris,France,1990-01-01",  # line 6
            "1005,Too,Few",  # line 7
        )

        response = await admin_user_client.post(IMPORT, files=upload(text))

        assert response.status_code == 422
        detail = response.json()["detail"]
        assert [(item["loc"], item["type"]) for item in detail] == [
            (["body", "file", 3, "emp_name"], "value_error"),
            (["body", "file", 5, "emp_dob"], "value_error"),
            (["body", "file", 6, "emp_id"], "int_parsing"),
            (["body", "file", 6, "emp_name"], "string_too_short"),
            (["body", "file", 7], "csv_columns"),
        ]
        assert detail[0]["msg"] == "must not contain control characters"
        assert detail[1]["msg"] == "must not be in the future"
        assert detail[4]["msg"] == "expected 5 fields, found 3"
        assert await stored(sessionmaker) == ([], [])

    async def test_duplicates_in_the_file_and_in_the_database_are_reported(
        self, admin_user_client, make_employees, sessionmaker
    ):
        await make_employees({"emp_id": 1001})
        text = csv_file(
            "1001,Ada Lovelace,London,United Kingdom,1985-12-10",
            "1002,Grace Hopper,New York,United States,1906-12-09",
            "1002,Grace Hopper,New York,United States,1906-12-09",
            "1002,Grace Hopper,New York,United States,1906-12-09",
        )

        response = await admin_user_client.post(IMPORT, files=upload(text))

        assert response.status_code == 422
        assert response.json()["detail"] == [  # in line order
            {
                "type": "already_exists",
                "loc": ["body", "file", 2, "emp_id"],
                "msg": "an employee with emp_id 1001 already exists",
            },
            {
                "type": "duplicate_in_file",
                "loc": ["body", "file", 4, "emp_id"],
                "msg": "emp_id 1002 is already on line 3 of this file",
            },
            {
                "type": "duplicate_in_file",
                "loc": ["body", "file", 5, "emp_id"],
                "msg": "emp_id 1002 is already on line 3 of this file",
            },
        ]
        assert await employee_count(sessionmaker) == 1

    @pytest.mark.parametrize("dry_run", ["false", "true"])
    async def test_a_header_without_rows_is_422(self, admin_user_client, sessionmaker, dry_run):
        response = await admin_user_client.post(
            IMPORT, files=upload(csv_file()), params={"dry_run": dry_run}
        )

        assert response.status_code == 422
        assert response.json()["detail"] == [
            {
                "type": "no_rows",
                "loc": ["body", "file", 1],
                "msg": "the file has a header but no rows",
            }
        ]
        assert await employee_count(sessionmaker) == 0

    async def test_dry_run_validates_and_writes_nothing(self, admin_user_client, sessionmaker):
        text = csv_file(
            "1,A,B,C,1990-01-01",
            "2,D,E,F,1990-01-02",
        )

        response = await admin_user_client.post(
            IMPORT, files=upload(text), params={"dry_run": "true"}
        )

        assert response.status_code == 200
        assert response.json() == {"valid": 2}
        assert await stored(sessionmaker) == ([], [])

    async def test_dry_run_reports_errors_too(self, admin_user_client):
        response = await admin_user_client.post(
            IMPORT, files=upload(csv_file("0,A,B,C,1990-01-01")), params={"dry_run": "true"}
        )

        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "file", 2, "emp_id"]

    async def test_wrong_header_is_refused(self, admin_user_client, sessionmaker):
        text = "id,name,city,country,dob\r\n1,A,B,C,1990-01-01\r\n"

        response = await admin_user_client.post(IMPORT, files=upload(text))

        assert response.status_code == 422
        assert response.json()["detail"] == [
            {
                "type": "csv_header",
                "loc": ["body", "file", 1],
                "msg": f"the first line must be the header {HEADER}",
            }
        ]
        assert await employee_count(sessionmaker) == 0

    async def test_bytes_that_are_not_utf8_are_refused(self, admin_user_client):
        text = csv_file("1,Ada,London,UK,1990-01-01").encode() + "2,Zoë,B,C,1990-01-01".encode(
            "latin-1"
        )

        response = await admin_user_client.post(IMPORT, files=upload(text))

        assert response.status_code == 422
        assert response.json()["detail"][0]["type"] == "csv_syntax"

    async def test_more_rows_than_the_limit_are_refused(self, app, settings, admin_user_client):
        app.state.settings = settings.model_copy(update={"import_max_rows": 2})
        text = csv_file(*(f"{n},A,B,C,1990-01-01" for n in range(1, 5)))

        response = await admin_user_client.post(IMPORT, files=upload(text))

        assert response.status_code == 422
        (item,) = response.json()["detail"]
        assert (item["type"], item["loc"]) == ("too_many_rows", ["body", "file", 4])

    async def test_a_long_error_list_is_cut_with_a_count(self, admin_user_client, monkeypatch):
        monkeypatch.setattr(csv_io, "MAX_REPORTED_ERRORS", 2)
        text = csv_file(*(f"{n},,B,C,1990-01-01" for n in range(1, 6)))

        response = await admin_user_client.post(IMPORT, files=upload(text))

        detail = response.json()["detail"]
        assert [item["type"] for item in detail] == [
            "string_too_short",
            "string_too_short",
            "too_many_errors",
        ]
        assert detail[-1]["msg"] == "3 more errors not listed"

    async def test_a_concurrent_insert_is_409_and_nothing_is_written(
        self, admin_user_client, make_employees, sessionmaker, monkeypatch, backend
    ):
        if backend in ("postgres", "pgbouncer"):
            pytest.skip("the COPY path has its own: tests/test_csv_copy.py")
        # The check passed, then another writer took 1002 before the commit: the key decides.
        await make_employees({"emp_id": 1002})

        async def nothing_stored(**_: Any) -> set[int]:
            return set()

        monkeypatch.setattr(crud, "stored_emp_ids", nothing_stored)
        text = csv_file("1001,A,B,C,1990-01-01", "1002,D,E,F,1990-01-01")

        response = await admin_user_client.post(IMPORT, files=upload(text))

        assert response.status_code == 409
        assert "nothing was imported" in response.json()["detail"]
        employees, audits = await stored(sessionmaker)
        assert [e.emp_id for e in employees] == [1002]
        assert audits == []

    @pytest.mark.postgres_only
    async def test_a_large_import_refreshes_the_planner_statistics(
        self, admin_user_client, normal_user_client, sessionmaker
    ):
        async with sessionmaker() as session:
            await session.execute(sql_text("ALTER TABLE employee SET (autovacuum_enabled = false)"))
            await session.commit()
        rows = [f"{n},Name {n},Leeds,United Kingdom,1990-01-01" for n in range(1, 1201)]

        response = await admin_user_client.post(IMPORT, files=upload(csv_file(*rows)))

        assert response.status_code == 201
        async with sessionmaker() as session:
            planned = "SELECT reltuples FROM pg_class WHERE relname = 'employee'"
            assert (await session.execute(sql_text(planned))).scalar_one() == 1200
        listed = await normal_user_client.get("/employees/?limit=1")
        assert listed.headers["X-Total-Count"] == "1200"

    async def test_regular_user_gets_403(self, normal_user_client, sessionmaker):
        text = csv_file("1,A,B,C,1990-01-01")

        response = await normal_user_client.post(IMPORT, files=upload(text))

        assert response.status_code == 403
        assert await employee_count(sessionmaker) == 0

    async def test_anonymous_gets_401(self, client):
        response = await client.post(IMPORT, files=upload(csv_file()))

        assert response.status_code == 401

    async def test_missing_file_is_422(self, admin_user_client):
        response = await admin_user_client.post(IMPORT, data={"other": "x"})

        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "file"]

    async def test_round_trip_export_then_import_elsewhere(
        self, admin_user_client, make_employees, sessionmaker
    ):
        await make_employees({"emp_id": 5, "emp_name": 'Zoë, "the" first', "city": "Ørsta"})
        response = await export_then_import_elsewhere(admin_user_client, sessionmaker)

        assert response.status_code == 201
        (employee,), _ = await stored(sessionmaker)
        assert (employee.emp_name, employee.city) == ('Zoë, "the" first', "Ørsta")


class TestSpreadsheetFormulas:
    """A cell a spreadsheet would run as a formula (=, +, -, @) is exported as text (a leading
    apostrophe), and the import takes the apostrophe off again."""

    FORMULAS = ('=HYPERLINK("http://x.test","a")', "+1+1", "-2", "@SUM(A1)", "'=quoted")

    async def test_export_writes_formula_cells_as_text(self, normal_user_client, make_employees):
        await make_employees(
            {"emp_id": 1, "emp_name": "=1+1", "city": "@Home", "country": "-UK"},
            {"emp_id": 2, "emp_name": "'Quoted", "city": "O'Brien Town", "country": "A+B"},
        )

        rows = list(csv.reader(io.StringIO((await normal_user_client.get(EXPORT)).text)))

        assert rows[1][1:4] == ["'=1+1", "'@Home", "'-UK"]
        assert rows[2][1:4] == ["'Quoted", "O'Brien Town", "A+B"]  # nothing to neutralise

    async def test_an_export_imports_back_unchanged(
        self, admin_user_client, make_employees, sessionmaker
    ):
        await make_employees(
            *({"emp_id": i, "emp_name": name} for i, name in enumerate(self.FORMULAS, 1)),
            {"emp_id": 9, "emp_name": "'Quoted"},
        )
        response = await export_then_import_elsewhere(admin_user_client, sessionmaker)

        assert response.status_code == 201
        employees, _ = await stored(sessionmaker)
        assert [e.emp_name for e in employees] == [*self.FORMULAS, "'Quoted"]

    def test_neutralising_and_restoring_are_inverse(self):
        for value in [*self.FORMULAS, "'", "''", "'Quoted", "Plain", "''=x", "=", "O'Brien"]:
            written = csv_format.neutralise(value)
            assert written[:1] not in ("=", "+", "-", "@")
            assert csv_format.restore(written) == value


class TestCsvOpenApi:
    async def test_operations_are_documented(self, client):
        schema = (await client.get("/openapi.json")).json()
        export = schema["paths"][f"/v1{EXPORT}"]["get"]
        imported = schema["paths"][f"/v1{IMPORT}"]["post"]

        assert export["operationId"] == "export_employees_csv"
        assert "text/csv" in export["responses"]["200"]["content"]
        assert {"401", "422"} <= export["responses"].keys()
        assert imported["operationId"] == "import_employees_csv"
        assert {"200", "201", "401", "403", "409", "413", "422"} <= imported["responses"].keys()
        assert "multipart/form-data" in imported["requestBody"]["content"]
        assert export["description"] and imported["description"]
