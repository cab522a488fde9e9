"""The scenarios (issue #5's eight; (i) and (j): what request limits and compression cost; (k):
what PgBouncer in transaction pooling costs) and how one of them is run against one system."""

import asyncio
import time
from dataclasses import dataclass

import asyncpg

from bench.data import CITY_TERMS
from bench.servers import Server, memory_kb, quiesce, serving_pids
from bench.walk import walk
from bench.wrk import LoadResult, finish_wrk, run_wrk, start_wrk


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    script: str | None  # the wrk Lua script; None for the Python walk (g)
    account: str | None  # whose bearer token the requests carry
    target: str


SCENARIOS = {
    s.key: s
    for s in (
        Scenario("a", "GET one by random emp_id (user)", "get_one", "user", ">= 4x, p99 < 50 ms"),
        Scenario("b", "list limit=100, random offset", "list_offset", "user", ">= 2x"),
        Scenario("c", "list city~, emp_name desc, limit=20", "list_city", "user", ">= 10x"),
        Scenario("d", "create (admin)", "create", "admin", ">= 2x"),
        Scenario("e", "PATCH (admin)", "patch", "admin", ">= 2x"),
        Scenario("f", "login", "login", None, ">= 1x"),
        Scenario("g", "walk to the last page, 1 connection", None, "user", "p50 < 10 ms/page"),
        Scenario("h", "(a) during a login storm", "get_one", "user", "p99 <= 2x (a) alone"),
        Scenario("i", "(a) with request limits on (Redis)", "get_one", "user", ">= 0.85x (a)"),
        Scenario("j", "(a) with compression off", "get_one", "user", "(a) >= 0.97x this"),
        Scenario("k", "(a) through PgBouncer (transaction mode)", "get_one", "user", ">= 0.8x (a)"),
    )
}


@dataclass
class Settings:
    dsn_by_system: dict[str, str]
    n: int
    duration: float
    warmup: float
    connections: int
    threads: int
    storm_connections: int
    walk_budget: float
    sequence: int = 0  # bumps per wrk run: seeds the RNG and keeps created emp_ids apart

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence


def wrk_env(scenario: Scenario, server: Server, settings: Settings) -> dict[str, str]:
    sequence = settings.next_sequence()
    username, password = server.user
    return {
        "BENCH_N": str(settings.n),
        "BENCH_SEED": str(sequence),
        "BENCH_TOKEN": server.tokens[scenario.account] if scenario.account else "",
        "BENCH_CITY_TERMS": ",".join(CITY_TERMS),
        # created emp_ids start far above N and every run gets its own range
        "BENCH_ID_BASE": str(settings.n + 10_000_000 + sequence * 3_000_000),
        "BENCH_USERNAME": username,
        "BENCH_PASSWORD": password,
    }


def load(scenario: Scenario, server: Server, settings: Settings, seconds: float) -> LoadResult:
    return run_wrk(
        server.url,
        scenario.script or "",
        env=wrk_env(scenario, server, settings),
        seconds=seconds,
        connections=settings.connections,
        threads=settings.threads,
    )


def run_scenario(key: str, server: Server, settings: Settings) -> LoadResult:
    scenario = SCENARIOS[key]
    quiesce(server)
    if key == "g":
        return walk(
            server.url,
            server.tokens["user"],
            follow_links=server.name == "ours",
            budget_seconds=settings.walk_budget,
        )
    if settings.warmup > 0:
        load(scenario, server, settings, settings.warmup)
        quiesce(server)
    if key == "h":
        return during_storm(scenario, server, settings)
    result = load(scenario, server, settings, settings.duration)
    if key in ("d", "e"):
        asyncio.run(after_writes(settings.dsn_by_system[server.name], settings.n))
    return result


def during_storm(scenario: Scenario, server: Server, settings: Settings) -> LoadResult:
    """(a) measured while `storm_connections` clients log in without pause."""
    storm = start_wrk(
        server.url,
        "login",
        env=wrk_env(SCENARIOS["f"], server, settings),
        seconds=settings.duration + 2,
        connections=settings.storm_connections,
        threads=1,
    )
    time.sleep(1)  # the storm is at full strength before the measurement starts
    try:
        result = load(scenario, server, settings, settings.duration)
    finally:
        storm_result = finish_wrk(*storm)
    result.extra = {
        "storm_logins_per_s": storm_result.rps,
        "storm_p99_ms": storm_result.p99_ms,
        "storm_non2xx": storm_result.non2xx + storm_result.errors,
    }
    return result


async def after_writes(dsn: str, n: int) -> None:
    """Keep every scenario on the same N rows: drop what (d) created; then vacuum, as autovacuum
    would within a minute of thousands of changes (revision 0005 sets the employee table's
    threshold at 1% of its rows). Servers set up for tests often run with autovacuum off, and a
    table left unvacuumed slows every later scenario that relies on index-only scans."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("DELETE FROM employee WHERE emp_id > $1", n)
        await connection.execute("VACUUM ANALYZE employee")
    finally:
        await connection.close()


def memory_soak(server: Server, settings: Settings, minutes: float) -> dict[str, object]:
    """RSS of every worker after minute 1 and at the end of `minutes` of mixed load."""
    soak = Scenario("m", "mixed load", "mixed", "admin", "RSS < 150 MB, growth < 10%")
    quiesce(server)
    process = start_wrk(
        server.url,
        "mixed",
        env=wrk_env(soak, server, settings),
        seconds=minutes * 60,
        connections=settings.connections,
        threads=settings.threads,
    )
    time.sleep(min(60.0, minutes * 30))  # the first sample: minute 1 (or half-way if shorter)
    first = {pid: memory_kb(pid)["VmRSS"] for pid in serving_pids(server)}
    result = finish_wrk(*process)
    last = {pid: memory_kb(pid)["VmRSS"] for pid in serving_pids(server)}
    return {
        "minutes": minutes,
        "rps": result.rps,
        "non2xx": result.non2xx + result.errors,
        "statuses": result.statuses,
        "workers": [
            {"pid": pid, "rss_first_kb": first.get(pid), "rss_end_kb": rss}
            for pid, rss in sorted(last.items())
        ],
    }
