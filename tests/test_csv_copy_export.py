"""The export through COPY on PostgreSQL (csv.copy_out): the bytes the CSV writer wrote, for
any filter and sort, whatever the values and the server's DateStyle."""

from datetime import date
from typing import Any

import asyncpg
import pytest

from app.employees.csv import copy_out
from app.employees.csv import format as csv_format
from app.employees.listing import list_employees
from app.employees.models import ListFilters, SortField, SortOrder

pytestmark = pytest.mark.postgres_only

EXPORT = "/employees/export.csv"
# Values the CSV quoting and the formula rule care about.
TRICKY_NAMES = [
    'Grace "Amazing" Hopper',
    "Hopper, Grace",
    "=1+1",
    "'=quoted",
    "''=twice",
    "'plain",
    "O'Brien",
    "+44",
    "-minus",
    "@home",
    " spaced ",
    "\\.",
    "Zoë Ørsta 東京",
    "a\nb",  # not from the API (control characters are refused), but possible in the table
    'a\r\n"b"',
    '"',
]


class TestExportBytes:
    @pytest.mark.parametrize(
        "filters",
        [
            ListFilters(),
            ListFilters(city="o", sort_by=SortField.emp_name, order=SortOrder.desc),
            ListFilters(country="100%_", sort_by=SortField.emp_dob),
            ListFilters(country="land", sort_by=SortField.city, order=SortOrder.desc),
        ],
        ids=["all", "city-name-desc", "escaped", "country-city-desc"],
    )
    async def test_the_copy_writes_what_the_csv_writer_wrote(
        self, normal_user_client, make_employees, sessionmaker, filters
    ):
        await make_employees(
            *(
                {
                    "emp_id": n,
                    "emp_name": name,
                    "city": TRICKY_NAMES[(n + 3) % len(TRICKY_NAMES)],
                    "country": ["Poland", "100%_land", "UK"][n % 3],
                    "emp_dob": date(1900 + n, 1 + n % 12, 1),
                }
                for n, name in enumerate(TRICKY_NAMES * 3, 1)
            )
        )
        expected = csv_format.format_header()
        async with sessionmaker() as session:
            rows, _ = await list_employees(
                session=session,
                limit=1000,
                city=filters.city,
                country=filters.country,
                sort_by=filters.sort_by,
                order=filters.order,
            )
        expected += csv_format.format_rows(rows)
        params = {
            key: value
            for key, value in (
                ("city", filters.city),
                ("country", filters.country),
                ("sort_by", filters.sort_by.value),
                ("order", filters.order.value),
            )
            if value is not None
        }

        response = await normal_user_client.get(EXPORT, params=params)

        assert response.status_code == 200
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert len(rows) > 3
        assert response.content == expected.encode()

    async def test_dates_are_iso_whatever_the_date_style(self, make_employees, settings):
        await make_employees({"emp_id": 1, "emp_dob": "1985-12-10"})
        driver = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
        chunks: list[bytes] = []

        async def write(chunk: bytes) -> None:
            chunks.append(chunk)

        try:
            await driver.execute("SET datestyle = 'SQL, DMY'")
            await copy_out.copy_csv(driver, ListFilters(), write)
        finally:
            await driver.close()

        assert b"".join(chunks).endswith(b",1985-12-10\r\n")

    async def test_an_empty_table_gives_the_header(self, normal_user_client):
        response = await normal_user_client.get(EXPORT)

        assert response.content == csv_format.format_header().encode()

    async def test_streaming_holds_one_connection(
        self, normal_user_client, make_employees, engine, monkeypatch
    ):
        await make_employees(*({"emp_id": n} for n in range(1, 6)))
        in_use = []
        crlf = copy_out.CrlfRecords.__call__

        def spy(self: Any, chunk: bytes) -> bytes:
            in_use.append(engine.pool.checkedout())
            return crlf(self, chunk)

        monkeypatch.setattr(copy_out.CrlfRecords, "__call__", spy)

        response = await normal_user_client.get(EXPORT)

        assert response.status_code == 200
        assert len(response.text.splitlines()) == 6
        assert in_use and set(in_use) == {1}
