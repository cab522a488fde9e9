"""Compression in the real app: the list page, the CSV export, entity tags of large records,
Vary on every answer, docs assets, and the settings."""

import gc
import gzip
import tracemalloc
import uuid
from datetime import date
from typing import Any

import pytest
from sqlalchemy import insert

from app.cli.demo import fake_employees
from app.core.types import utc_now
from app.employees import crud
from app.employees.crud import employee_table
from app.employees.csv import io as csv_io
from app.employees.history.models import SystemActor
from tests.asgi import call
from tests.conftest import employee_payload, make_settings

EXPORT = "/employees/export.csv"
CODINGS = ["gzip", "br", "zstd"]


async def seed(sessionmaker: Any, count: int) -> None:
    """Realistic employees, written as `seed-demo` and the CSV import write them."""
    async with sessionmaker() as session:
        rows = fake_employees(count, first_emp_id=1, seed=20261204)
        await crud.insert_all(session=session, batches=csv_io.batched(rows), actor=SystemActor("t"))


async def raw(client: Any, url: str, coding: str, **headers: str) -> tuple[Any, list[bytes]]:
    """The answer and its body parts as sent, before any decoding."""
    async with client.stream("GET", url, headers={"Accept-Encoding": coding, **headers}) as answer:
        return answer, [part async for part in answer.aiter_raw()]


class TestListPage:
    async def test_a_page_of_100_employees_is_at_least_4x_smaller_gzipped(
        self, normal_user_client, sessionmaker
    ):
        await seed(sessionmaker, 100)
        plain, plain_parts = await raw(normal_user_client, "/employees/?limit=100", "identity")
        packed, packed_parts = await raw(normal_user_client, "/employees/?limit=100", "gzip")
        plain_body, packed_body = b"".join(plain_parts), b"".join(packed_parts)
        assert len(plain_body) > 20_000
        assert plain.headers.get("content-encoding") is None
        assert packed.headers["content-encoding"] == "gzip"
        assert packed.headers["content-length"] == str(len(packed_body))
        assert gzip.decompress(packed_body) == plain_body
        assert len(plain_body) / len(packed_body) >= 4

    @pytest.mark.parametrize("coding", ["br", "zstd"])
    async def test_brotli_and_zstd_pages_decode_to_the_same_json(
        self, normal_user_client, sessionmaker, coding
    ):
        await seed(sessionmaker, 100)
        plain = await normal_user_client.get(
            "/employees/?limit=100", headers={"Accept-Encoding": ""}
        )
        answer = await normal_user_client.get(
            "/employees/?limit=100", headers={"Accept-Encoding": coding}
        )
        assert answer.headers["content-encoding"] == coding
        assert answer.json() == plain.json()
        assert answer.headers["x-total-count"] == "100"


class TestExport:
    @pytest.fixture
    def settings(self, request, backend):
        # Thousands of rows leave the table's statistics behind them (an import's ANALYZE,
        # autovacuum), and the list's X-Total-Count estimates from those: a PostgreSQL database
        # of their own, dropped afterwards.
        if backend == "sqlite":
            return make_settings("sqlite+aiosqlite://")
        return make_settings(request.getfixturevalue("database_url"))

    @pytest.mark.parametrize("coding", CODINGS)
    async def test_a_compressed_export_arrives_in_parts_and_decodes_to_the_same_csv(
        self, app, sessionmaker, token_for, normal_user, coding, backend
    ):
        await seed(sessionmaker, 3 * csv_io.BATCH_SIZE + 10)
        auth = ("Authorization", f"Bearer {token_for(normal_user)}")
        plain = await call(app, EXPORT, headers=[auth])
        packed = await call(app, EXPORT, headers=[auth, ("Accept-Encoding", coding)])
        assert packed.header("content-encoding") == coding
        assert packed.header("content-length") is None
        assert packed.header("content-disposition") == 'attachment; filename="employees.csv"'
        assert packed.raw_bytes < plain.raw_bytes / 2
        if backend == "postgres":
            # One COPY, sent in the pieces PostgreSQL sends: how many depends on how fast they
            # come (two exports need not cut alike); the header goes first, on its own.
            assert plain.parts[0] == b"emp_id,emp_name,city,country,emp_dob\r\n"
            assert len(plain.parts) >= 3 and all(plain.parts[:-1]) and plain.parts[-1] == b""
            assert len(packed.parts) >= 3
            assert b"".join(packed.decoded) == b"".join(plain.parts)
            return
        # The header line, four pages, and the stream's end: a part for each, as it was made.
        assert [len(part) > 0 for part in plain.parts] == [True] * 5 + [False]
        assert len(packed.parts) == len(plain.parts)
        assert packed.decoded == plain.parts

    @pytest.mark.slow
    async def test_memory_stays_flat_as_the_export_grows(
        self, app, sessionmaker, token_for, normal_user, backend
    ):
        """The same export at 10k and 30k rows: a compressed part per page, and the peak memory
        (tracemalloc, the whole request) grows by far less than the CSV does."""
        headers = [
            ("Authorization", f"Bearer {token_for(normal_user)}"),
            ("Accept-Encoding", "gzip"),
        ]
        async with sessionmaker() as session:
            await bulk_insert(session, range(1, 10_001))
        await call(app, EXPORT, headers=headers, keep=False)  # first-use costs (caches, imports)
        small, small_peak = await traced_export(app, headers)
        async with sessionmaker() as session:
            await bulk_insert(session, range(10_001, 30_001))
        large, large_peak = await traced_export(app, headers)
        assert large.status == 200
        assert large.header("content-encoding") == "gzip"
        if backend == "sqlite":
            assert large.part_count == 30_000 // csv_io.BATCH_SIZE + 2  # header, pages, end
        else:
            assert large.part_count >= 3  # the header, the COPY's pieces as they came, the end
        assert large.decoded_bytes > 2.9 * small.decoded_bytes
        assert large_peak - small_peak < (large.decoded_bytes - small.decoded_bytes) / 3, (
            small_peak,
            large_peak,
        )


async def traced_export(app: Any, headers: list[tuple[str, str]]) -> tuple[Any, int]:
    gc.collect()  # garbage of earlier work is not the export's
    tracemalloc.start()
    try:
        answer = await call(app, EXPORT, headers=headers, keep=False)
        return answer, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def bulk_insert(session: Any, emp_ids: range) -> None:
    """Plain rows, many per statement: fast enough to seed tens of thousands in a test."""
    now = utc_now()
    for start in range(0, len(emp_ids), 10_000):
        batch = [
            {
                "id": uuid.uuid4(),
                "emp_id": emp_id,
                # Random letters: compressed, they stay about half the size (like real names).
                "emp_name": f"Employee {uuid.uuid4().hex[:12]}",
                "city": uuid.uuid4().hex[:10],
                "country": "United Kingdom",
                "emp_dob": date(1980, 1, 1 + emp_id % 28),
                "created_at": now,
                "updated_at": now,
            }
            for emp_id in emp_ids[start : start + 10_000]
        ]
        await session.execute(insert(employee_table), batch)
    await session.commit()


# Three fields of 100 three-byte characters: the record's JSON is over 1 KiB, so compressed.
LONG = {"emp_name": "山" * 100, "city": "川" * 100, "country": "国" * 100}
ONE = "/employees/4242"


class TestLargeRecordTags:
    async def test_tags_of_a_compressed_record_work_for_reads_and_writes(self, admin_user_client):
        created = await admin_user_client.post("/employees/", json=employee_payload(4242, **LONG))
        assert created.status_code == 201
        plain = await admin_user_client.get(ONE, headers={"Accept-Encoding": "identity"})
        tag = plain.headers["etag"]
        assert int(plain.headers["content-length"]) > 1024

        read = await admin_user_client.get(ONE, headers={"Accept-Encoding": "gzip"})
        assert read.headers["content-encoding"] == "gzip"
        assert read.headers["etag"] == tag[:-1] + '-gzip"'
        assert read.json() == plain.json()
        gzip_tag = read.headers["etag"]

        cached = {"Accept-Encoding": "gzip", "If-None-Match": gzip_tag}
        not_modified = await admin_user_client.get(ONE, headers=cached)
        assert not_modified.status_code == 304
        assert not_modified.headers["etag"] == gzip_tag
        assert "content-encoding" not in not_modified.headers
        assert not_modified.headers["vary"] == "Accept-Encoding"

        # Those gzip bytes are not what a zstd request gets: the whole record, its own tag.
        other = await admin_user_client.get(ONE, headers=cached | {"Accept-Encoding": "zstd"})
        assert other.status_code == 200
        assert other.headers["etag"] == tag[:-1] + '-zstd"'

        changed = await admin_user_client.patch(
            ONE,
            json={"city": "京" * 100},
            headers={"If-Match": gzip_tag, "Accept-Encoding": "gzip"},
        )
        assert changed.status_code == 200
        assert changed.json()["version"] == 2
        stale = await admin_user_client.patch(
            ONE, json={"city": "Rome"}, headers={"If-Match": gzip_tag}
        )
        assert stale.status_code == 412
        deleted = await admin_user_client.delete(ONE, headers={"If-Match": changed.headers["etag"]})
        assert deleted.status_code == 204

    async def test_an_identity_tag_still_gets_its_304_from_a_gzip_client(self, admin_user_client):
        await admin_user_client.post("/employees/", json=employee_payload(4242, **LONG))
        tag = (await admin_user_client.get(ONE, headers={"Accept-Encoding": ""})).headers["etag"]
        headers = {"Accept-Encoding": "gzip", "If-None-Match": tag}
        not_modified = await admin_user_client.get(ONE, headers=headers)
        assert not_modified.status_code == 304
        assert not_modified.headers["etag"] == tag
