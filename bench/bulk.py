"""(l) and (m): `import-csv` and `export-csv` against a bare `COPY` of the same rows into (or
out of) the same table, with its indexes, measured one after the other in one run, in a
database of their own. No servers, no wrk.

Each command's body runs in a process of its own (`python -m bench.bulk import|export FILE`,
DATABASE_URL in the environment), timed from the start of its work to the end: the
interpreter's start-up (a second or more of imports here) is no part of a load, and would
outweigh a bare COPY TO of 200,000 rows. That process's peak RSS (its VmHWM) is the command's;
its whole wall time is reported too."""

import asyncio
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import asyncpg
import httpx

from bench import servers
from bench.data import OURS_COLUMNS, database_dsn, generate_rows, unique_name
from bench.servers import REPO, asyncpg_url


@dataclass(frozen=True)
class BulkScenario:
    key: str
    title: str
    target: str


SCENARIOS = {
    s.key: s
    for s in (
        BulkScenario("l", "import vs bare COPY into employee", "<= 2x, RSS flat"),
        BulkScenario("m", "export vs bare COPY TO (medians of 3)", "<= 2x"),
    )
}
DEFAULT_ROWS = 200_000
EXPORT_ROUNDS = 3
TARGET_RATIO = 2.0
EXPORT_QUERY = "SELECT emp_id, emp_name, city, country, emp_dob FROM employee ORDER BY emp_id"


@dataclass
class BulkResult:
    key: str
    rows: int
    bare_seconds: float
    ours_seconds: float
    peak_rss_kb: int
    command_seconds: float = 0.0
    what: str = ""  # how ours ran: the command, or the HTTP request
    rss_before_kb: int = 0  # the server's worker: its peak before the exports

    @property
    def ratio(self) -> float:
        return round(self.ours_seconds / self.bare_seconds, 2) if self.bare_seconds else 0.0

    @property
    def met(self) -> bool:
        return 0 < self.ratio <= TARGET_RATIO

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ratio": self.ratio, "met": self.met}


def write_csv(path: Path, n: int, *, after: int = 0) -> None:
    """The generated employees in the import format (the rows the bare COPY loads), their
    emp_ids `after` + 1 to `after` + n."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["emp_id", "emp_name", "city", "country", "emp_dob"])
        for _, emp_id, name, city, country, dob in generate_rows(n):
            writer.writerow([after + cast(int, emp_id), name, city, country, dob])


def run_command(kind: str, path: Path, dsn: str) -> tuple[float, float, int]:
    """`python -m bench.bulk KIND PATH` on the database: the seconds its work took, the
    process's wall seconds, and its peak RSS in KB (its own VmHWM)."""
    env = {**os.environ, "DATABASE_URL": asyncpg_url(dsn)}
    started = time.monotonic()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "bench.bulk", kind, str(path)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
        assert process.stdout is not None
        output = process.stdout.read()
        _, status, _ = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
        if os.waitstatus_to_exitcode(status):
            errors.seek(0)
            raise RuntimeError(f"{kind} {path} failed: {errors.read().decode()[-2000:]}")
    process.returncode = os.waitstatus_to_exitcode(status)
    measured = json.loads(output)
    return measured["seconds"], wall, measured["peak_rss_kb"]


def peak_rss_kb() -> int:
    """This process's peak resident set since it started (VmHWM). Not `ru_maxrss` from `wait4`:
    on Linux a child's counts its parent's peak from before the exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def child(kind: str, path: Path) -> float:
    """What `import-csv PATH` or `export-csv --output PATH` does, timed (the imports first)."""
    from app.cli import data  # before the clock starts
    from app.employees.models import ListFilters

    started = time.monotonic()
    if kind == "import":
        size = path.stat().st_size
        asyncio.run(data.import_rows(lambda: path.open("rb"), size, dry_run=False))
    else:
        with path.open("wb") as handle:
            asyncio.run(data.export_rows(handle, ListFilters()))
    return time.monotonic() - started


async def _sql(dsn: str, *statements: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def bare_copy_in(dsn: str, n: int) -> float:
    """Seconds a bare COPY of the same rows into `employee` takes (then emptied again)."""
    now = datetime.now(UTC)
    records = ((*row, now, now) for row in generate_rows(n))
    connection = await asyncpg.connect(dsn)
    try:
        started = time.monotonic()
        await connection.copy_records_to_table("employee", records=records, columns=OURS_COLUMNS)
        seconds = time.monotonic() - started
        await connection.execute("TRUNCATE employee, employee_audit")
        await connection.execute("VACUUM ANALYZE employee")
    finally:
        await connection.close()
    return seconds


async def bare_copy_out(dsn: str, target: Path) -> float:
    connection = await asyncpg.connect(dsn)
    try:
        started = time.monotonic()
        await connection.copy_from_query(EXPORT_QUERY, output=target, format="csv")
        return time.monotonic() - started
    finally:
        await connection.close()


def measure_import(dsn: str, n: int, folder: Path) -> BulkResult:
    source = folder / "employees.csv"
    write_csv(source, n)
    bare = asyncio.run(bare_copy_in(dsn, n))
    seconds, wall, rss = run_command("import", source, dsn)
    return BulkResult("l", n, round(bare, 3), round(seconds, 3), rss, round(wall, 3), "import-csv")


def measure_export(dsn: str, n: int, folder: Path, rounds: int = EXPORT_ROUNDS) -> BulkResult:
    """Bare, then ours, `rounds` times (an export of 200,000 rows takes a fraction of a second:
    one sample is mostly noise); the medians."""
    asyncio.run(_sql(dsn, "VACUUM ANALYZE employee"))
    bare, ours = [], []
    for _ in range(rounds):
        bare.append(asyncio.run(bare_copy_out(dsn, folder / "bare.csv")))
        ours.append(run_command("export", folder / "ours.csv", dsn))
    seconds, wall, rss = (statistics.median(values) for values in zip(*ours, strict=True))
    bare_seconds = statistics.median(bare)
    wall = round(wall, 3)
    return BulkResult(
        "m", n, round(bare_seconds, 3), round(seconds, 3), int(rss), wall, "export-csv"
    )


def http_export_seconds(server: servers.Server) -> float:
    """GET /employees/export.csv read to its end, uncompressed (the COPY's cost, not gzip's)."""
    headers = {"Authorization": f"Bearer {server.tokens['user']}", "Accept-Encoding": "identity"}
    started = time.monotonic()
    with httpx.stream("GET", server.url + "/employees/export.csv", headers=headers) as response:
        response.raise_for_status()
        for _ in response.iter_raw():
            pass
    return time.monotonic() - started


def measure_http_export(dsn: str, n: int, folder: Path, rounds: int = EXPORT_ROUNDS) -> BulkResult:
    """The same export over HTTP from one worker of ours, against bare COPY TO, the medians;
    the worker's peak RSS (VmHWM) once done."""
    server = servers.start_ours(dsn, 1, folder, name="ours-bulk")
    try:
        servers.wait_ready(server)
        servers.prepare_accounts(server)
        before = max(worker["VmHWM"] for worker in servers.worker_memory(server))
        http_export_seconds(server)  # the worker's first-use costs (imports, caches)
        bare, ours = [], []
        for _ in range(rounds):
            bare.append(asyncio.run(bare_copy_out(dsn, folder / "bare.csv")))
            ours.append(http_export_seconds(server))
        peak = max(worker["VmHWM"] for worker in servers.worker_memory(server))
    finally:
        servers.stop(server)
    what = "GET /employees/export.csv"
    seconds, bare_seconds = statistics.median(ours), statistics.median(bare)
    return BulkResult("m", n, round(bare_seconds, 3), round(seconds, 3), peak, 0.0, what, before)


def run_bulk(
    maintenance_dsn: str,
    keys: list[str],
    n: int,
    *,
    create: Callable[[str, str], Any],
    drop: Callable[[str, str], Any],
    migrate: Callable[[str], None],
    log: Callable[[str], None],
) -> list[BulkResult]:
    """(l) then (m) in a fresh migrated database; (m) exports what (l) imported (or, alone,
    rows loaded by import-csv first, unmeasured)."""
    name = unique_name("bench_bulk")
    dsn = database_dsn(maintenance_dsn, name)
    asyncio.run(create(maintenance_dsn, name))
    results = []
    try:
        migrate(dsn)
        with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp:
            folder = Path(tmp)
            imported = measure_import(dsn, n, folder)
            if "l" in keys:
                results.append(imported)
                log(describe(imported))
            if "m" in keys:
                for measure in (measure_export, measure_http_export):
                    exported = measure(dsn, n, folder)
                    results.append(exported)
                    log(describe(exported))
    finally:
        asyncio.run(drop(maintenance_dsn, name))
    return results


def describe(result: BulkResult) -> str:
    what = result.what or ("import-csv" if result.key == "l" else "export-csv")
    seconds, before = result.command_seconds, result.rss_before_kb / 1024
    whole = f" (the whole command: {seconds:.1f} s)" if seconds else ""
    whole += f" ({before:.1f} MB before the exports)" if before else ""
    return (
        f"({result.key}) {what} of {result.rows:,} rows: {result.ours_seconds:.2f} s, bare COPY "
        f"{result.bare_seconds:.2f} s, ratio {result.ratio:.2f} (target <= {TARGET_RATIO:g}), "
        f"peak RSS {result.peak_rss_kb / 1024:.1f} MB{whole}"
    )


def markdown(results: list[BulkResult], when: str, command: str) -> str:
    lines = [
        f"# Bulk loads ({when})",
        "",
        f"`{command}`; each command's work against a bare COPY of the same rows, the same "
        "table and indexes, in this run (the command's whole wall time, interpreter start-up "
        "included, in the last column).",
        "",
        "| scenario | rows | ours (s) | bare COPY (s) | ratio | target | met | peak RSS (MB) "
        "| command (s) |",
        "|---|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for result in results:
        scenario = SCENARIOS[result.key]
        title = f"{scenario.title}: {result.what}" if result.what else scenario.title
        whole = f"{result.command_seconds:.2f}" if result.command_seconds else "-"
        lines.append(
            f"| ({result.key}) {title} | {result.rows:,} | {result.ours_seconds:.2f} | "
            f"{result.bare_seconds:.2f} | {result.ratio:.2f} | {scenario.target} | "
            f"{'yes' if result.met else 'NO'} | {result.peak_rss_kb / 1024:.1f} | {whole} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    seconds = child(sys.argv[1], Path(sys.argv[2]))
    print(json.dumps({"seconds": seconds, "peak_rss_kb": peak_rss_kb()}))
