"""The benchmark harness's pure parts (no servers, no wrk): parsing, statistics, the report,
and what a run measures when the seed baseline is not there."""

import asyncio
import json
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import URL, make_url

import bench.report
import bench.run
import bench.setup
from bench import servers
from bench.data import database_dsn, generate_rows
from bench.report import SYSTEMS, markdown, summarise, write_outputs
from bench.run import choose_baseline, scenario_keys
from bench.walk import parse_link_header, percentile, walk
from bench.wrk import LoadResult, WrkError, build_script, parse_wrk_output
from tests.conftest import require_postgres
from tests.pg import PostgresServer, asyncpg_dsn
from tests.pgbouncer import INSTALL_HINT, find_pgbouncer, pgbouncer_version

WRK_STDOUT = """Running 10s test @ http://127.0.0.1:8000
  2 threads and 64 connections
  12000 requests in 10.00s, 3.10MB read
BENCH_JSON {"requests": 12000, "duration_us": 10000000, "bytes": 3100000, \
"errors": {"connect": 0, "read": 2, "write": 0, "status": 30, "timeout": 1}, \
"latency_us": {"mean": 5300.5, "max": 90000, "p50": 4200, "p90": 8000, "p99": 21500, \
"p999": 50000}, "statuses": {"200": 11950, "404": 20, "500": 10, "201": 20}}
Requests/sec:   1200.00
"""


class TestWrkOutput:
    def test_summary_line_becomes_rps_latency_in_ms_and_failures(self) -> None:
        result = parse_wrk_output(WRK_STDOUT)
        assert result.requests == 12000
        assert result.rps == 1200.0
        assert (result.p50_ms, result.p90_ms, result.p99_ms) == (4.2, 8.0, 21.5)
        assert result.max_ms == 90.0
        assert result.non2xx == 30  # 404s and 500s; 200 and 201 are successes
        assert result.errors == 3  # socket read errors and timeouts, not the status count
        assert result.statuses == {"200": 11950, "201": 20, "404": 20, "500": 10}

    def test_output_without_the_summary_line_is_an_error(self) -> None:
        with pytest.raises(WrkError, match="BENCH_JSON"):
            parse_wrk_output("unable to connect to 127.0.0.1:8000 Connection refused\n")

    def test_every_scenario_script_gets_the_shared_done_and_its_own_request(self) -> None:
        script = build_script("get_one")
        assert "function done(summary, latency, requests)" in script
        assert 'wrk.format("GET", "/employees/"' in script
        assert script.index("function done") < script.index("request = function")


class TestLinkHeader:
    def test_our_link_header_gives_each_rel_its_url(self) -> None:
        header = (
            '<http://h/employees/?offset=0&limit=100>; rel="first", '
            '<http://h/employees/?offset=100&limit=100>; rel="prev", '
            '<http://h/employees/?cursor=abc%3D&limit=100>; rel="next"'
        )
        links = parse_link_header(header)
        assert links == {
            "first": "http://h/employees/?offset=0&limit=100",
            "prev": "http://h/employees/?offset=100&limit=100",
            "next": "http://h/employees/?cursor=abc%3D&limit=100",
        }

    def test_unquoted_and_multiple_rels_and_absent_header(self) -> None:
        links = parse_link_header('</p?page=3>; rel=next, </p?page=9>; title=x; rel="last end"')
        assert links == {"next": "/p?page=3", "last": "/p?page=9", "end": "/p?page=9"}
        assert parse_link_header(None) == {}
        assert parse_link_header("") == {}


def paged_api(total: int, *, links: bool) -> httpx.MockTransport:
    """A fake list endpoint: `total` rows, 100 a page, with or without `Link: next`."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer t"
        offset = int(request.url.params.get("offset", 0))
        rows = [{"emp_id": i} for i in range(offset, min(offset + 100, total))]
        headers = {}
        if links and offset + 100 < total:
            headers["Link"] = f'</employees/?offset={offset + 100}&limit=100>; rel="next"'
        return httpx.Response(200, json=rows, headers=headers)

    return httpx.MockTransport(handler)


class TestWalk:
    def test_following_link_next_visits_every_page_once(self) -> None:
        result = walk(
            "http://h",
            "t",
            follow_links=True,
            budget_seconds=60,
            transport=paged_api(250, links=True),
        )
        assert result.extra["pages"] == 3
        assert result.extra["complete"] is True
        assert result.non2xx == 0

    def test_offset_walk_stops_at_the_first_short_page(self) -> None:
        result = walk(
            "http://h",
            "t",
            follow_links=False,
            budget_seconds=60,
            transport=paged_api(300, links=False),
        )
        assert result.extra["pages"] == 4  # 100, 100, 100, then an empty page ends it
        assert result.extra["complete"] is True

    def test_a_failing_page_ends_the_walk_and_is_counted(self) -> None:
        transport = httpx.MockTransport(lambda request: httpx.Response(503))
        result = walk("http://h", "t", follow_links=True, budget_seconds=60, transport=transport)
        assert (result.non2xx, result.extra["pages"], result.extra["complete"]) == (1, 1, False)

    def test_percentile_is_nearest_rank(self) -> None:
        values = [float(v) for v in range(1, 101)]
        assert percentile(values, 50) == 50.0
        assert percentile(values, 99) == 99.0
        assert percentile([7.0], 99) == 7.0


def run(rps: float, p50: float, p99: float, non2xx: int = 0, requests: int = 100) -> dict[str, Any]:
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "non2xx": non2xx,
        "errors": 0,
        "requests": requests,
    }


ROUNDS = [
    {
        "ours": {"a": run(4000, 5, 30), "b": run(900, 30, 80, non2xx=2), "h": run(3000, 8, 50)},
        "seed": {"a": run(1000, 50, 200), "b": run(500, 90, 400), "h": run(5, 900, 9000)},
    },
    {
        "ours": {"a": run(4400, 5, 40), "b": run(1100, 30, 90, non2xx=1), "h": run(3200, 9, 70)},
        "seed": {"a": run(1000, 52, 220), "b": run(520, 95, 420), "h": run(0, 0, 0, requests=0)},
    },
]
META = {
    "n": 100_000,
    "rounds": 2,
    "duration": 10,
    "warmup": 2,
    "connections": 64,
    "threads": 2,
    "workers": 2,
    "cpus": 2,
    "date": "2026-11-23 12:00 UTC",
    "command": "python -m bench.run",
    "memory": {"ours": [{"pid": 1, "VmHWM": 102400, "VmRSS": 90000}]},
}


class TestSummary:
    def test_medians_ratios_and_verdicts(self) -> None:
        summary = summarise(ROUNDS)
        a, b = summary["a"], summary["b"]
        assert a["ours"]["rps"] == 4200 and a["seed"]["rps"] == 1000
        assert a["ratio"] == 4.2 and a["met"] is True  # >= 4x and p99 35 ms < 50 ms
        assert b["ours"]["non2xx"] == 3  # failures are added up over the rounds
        assert b["ratio"] == pytest.approx(1000 / 510, abs=0.01) and b["met"] is False

    def test_storm_p99_is_judged_against_a_alone(self) -> None:
        storm = summarise(ROUNDS)["h"]
        assert storm["ours"]["p99_vs_alone"] == round(60 / 35, 2)
        assert storm["met"] is True
        # the seed finished no request in one round, so its median of requests is 50, not 0
        assert storm["seed"]["p99_vs_alone"] == round(4500 / 210, 2)

    def test_request_limits_are_judged_against_a_in_the_same_run(self) -> None:
        rounds = [{"ours": {"a": run(4000, 5, 30), "i": run(3600, 6, 35)}}]
        limited = summarise(rounds)["i"]
        assert (limited["ours"]["rps_vs_alone"], limited["met"]) == (0.9, True)
        rounds = [{"ours": {"a": run(4000, 5, 30), "i": run(3000, 6, 35)}}]
        assert summarise(rounds)["i"]["met"] is False  # 0.75x
        text = markdown(summarise(rounds), SOLO_META)
        assert (
            "(i) ours: throughput with request limits on (Redis) / (a) with them off: 0.75x" in text
        )

    def test_a_variant_is_judged_against_a_measured_around_it_when_there_is_one(self) -> None:
        # The machine slowed between (a) at the start of each round and (i) later on: against the
        # round's (a) the limits would seem to cost a third, against their neighbours a tenth.
        def limited(rps: float, reference: float) -> dict[str, Any]:
            return {**run(rps, 6, 35), "extra": {"reference_rps": reference}}

        rounds = [
            {"ours": {"a": run(4000, 5, 30), "i": limited(2700, 3000)}},
            {"ours": {"a": run(4200, 5, 30), "i": limited(2790, 3100)}},
            {"ours": {"a": run(4100, 5, 30), "i": limited(3400, 3300)}},
        ]
        summary = summarise(rounds)["i"]
        assert summary["ours"]["rps_vs_alone"] == 0.9  # median of 0.9, 0.9 and 1.03
        assert summary["met"] is True

    def test_compression_off_is_judged_against_a_in_the_same_run(self) -> None:
        rounds = [{"ours": {"a": run(3900, 5, 30), "j": run(4000, 6, 35)}}]
        assert summarise(rounds)["j"]["met"] is True  # 3900 / 4000 = 0.975
        rounds = [{"ours": {"a": run(3800, 5, 30), "j": run(4000, 6, 35)}}]
        assert summarise(rounds)["j"]["met"] is False  # 0.95
        text = markdown(summarise(rounds), SOLO_META)
        assert "(j) ours: throughput of (a), compression on / compression off: 0.95x" in text

    def test_pgbouncer_is_judged_against_a_measured_around_it(self) -> None:
        def pooled(rps: float, reference: float) -> dict[str, Any]:
            label = "PgBouncer 1.25 (prepared statements kept)"
            return {**run(rps, 6, 35), "extra": {"reference_rps": reference, "pgbouncer": label}}

        rounds = [
            {"ours": {"a": run(4000, 5, 30), "k": pooled(3400, 4000)}},
            {"ours": {"a": run(4000, 5, 30), "k": pooled(3000, 3600)}},
        ]
        summary = summarise(rounds)
        assert summary["k"]["ours"]["rps_vs_alone"] == pytest.approx(0.84, abs=0.01)
        assert summary["k"]["met"] is True
        text = markdown(summary, SOLO_META)
        assert (
            "(k) ours: throughput through PgBouncer (transaction mode) / (a) direct: 0.84x, "
            "PgBouncer 1.25 (prepared statements kept)"
        ) in text
        rounds = [{"ours": {"a": run(4000, 5, 30), "k": pooled(2900, 3900)}}]
        assert summarise(rounds)["k"]["met"] is False  # 0.74x

    def test_a_p99_over_50_ms_fails_a_even_at_a_high_ratio(self) -> None:
        rounds = [{"ours": {"a": run(9000, 5, 60)}, "seed": {"a": run(1000, 50, 200)}}]
        assert summarise(rounds)["a"]["met"] is False

    def test_a_stalled_system_is_reported_as_such(self) -> None:
        rounds = [
            {
                "ours": {"a": run(100, 5, 10), "h": run(0, 0, 0, requests=0)},
                "seed": {"a": run(100, 5, 10), "h": run(0, 0, 0, requests=0)},
            }
        ]
        summary = summarise(rounds)
        assert summary["h"]["ours"]["p99_vs_alone"] is None
        assert summary["h"]["met"] is False
        assert "none finished" in markdown(summary, META)


class TestOutputs:
    def test_markdown_table_has_one_row_per_scenario_with_ratio_target_and_verdict(self) -> None:
        text = markdown(summarise(ROUNDS), META)
        rows = [line for line in text.splitlines() if line.startswith("| (")]
        assert [row.split(")")[0] for row in rows] == ["| (a", "| (b", "| (h"]
        assert "| 4,200 | 5 | 35.0 | 0 | 1,000 |" in rows[0]
        assert rows[0].endswith("| 4.20x | >= 4x, p99 < 50 ms | yes |")
        assert rows[1].endswith("| >= 2x | **no** |")
        assert "Peak RSS per worker (VmHWM, MB), ours: 100" in text

    def test_memory_soak_is_judged_on_end_rss_and_growth(self) -> None:
        def soak(first_kb: int, end_kb: int) -> dict[str, Any]:
            worker = {"pid": 1, "rss_first_kb": first_kb, "rss_end_kb": end_kb}
            return {"minutes": 5, "rps": 900, "non2xx": 0, "workers": [worker]}

        meta = {**META, "soak": {"ours": soak(100 * 1024, 105 * 1024)}}
        assert "105 MB (+5.0%); target < 150 MB and < 10%: target met" in markdown({}, meta)
        meta["soak"] = {"ours": soak(100 * 1024, 120 * 1024)}  # +20% between minute 1 and 5
        assert "120 MB (+20.0%); target < 150 MB and < 10%: **target missed**" in markdown({}, meta)

    def test_json_and_markdown_written_and_chart_drawn(self, tmp_path: Path) -> None:
        pytest.importorskip("matplotlib")
        write_outputs(tmp_path, ROUNDS, summarise(ROUNDS), META)
        document = json.loads((tmp_path / "results.json").read_text())
        assert document["rounds"] == ROUNDS
        assert document["summary"]["a"]["ratio"] == 4.2
        assert (tmp_path / "results.md").read_text().startswith("# Benchmark")
        assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class TestInputs:
    def test_h_brings_a_along_and_scenarios_keep_their_order(self) -> None:
        assert scenario_keys("h,c") == ["a", "c", "h"]
        assert scenario_keys("i") == ["a", "i"]
        assert scenario_keys("j,c") == ["a", "c", "j"]
        assert scenario_keys("k") == ["a", "k"]
        with pytest.raises(SystemExit, match="unknown scenarios: z"):
            scenario_keys("a,z")

    def test_rows_are_deterministic_and_emp_ids_are_1_to_n(self) -> None:
        rows = list(generate_rows(500))
        assert rows == list(generate_rows(500))
        assert sorted(row[1] for row in rows) == list(range(1, 501))
        assert [row[1] for row in rows[:5]] != [1, 2, 3, 4, 5]  # shuffled heap order

    def test_bench_databases_live_on_the_same_server(self) -> None:
        assert database_dsn("postgresql://u:p@db:5432/postgres?sslmode=disable", "b1") == (
            "postgresql://u:p@db:5432/b1?sslmode=disable"
        )
        assert database_dsn("postgresql://postgres@127.0.0.1", "b2") == (
            "postgresql://postgres@127.0.0.1/b2"
        )


SOLO_ROUNDS = [
    {
        "ours": {
            "a": run(4000, 5, 60),
            "b": run(900, 30, 80),
            "g": run(270, 3.5, 6),
            "h": run(3000, 8, 70),
        }
    }
]
SOLO_META = {**META, "rounds": 1, "baseline": "not measured"}
HOW_TO_ADD = ("../shared/anchors/seed_app", "SEED_APP=<path>", "BENCH_SEED_APP=<path>")


class TestWithoutBaseline:
    def test_a_missing_seed_folder_means_ours_alone_and_a_note_on_how_to_add_it(
        self, tmp_path: Path
    ) -> None:
        absent = tmp_path / "seed_app"
        baseline = choose_baseline({"BENCH_SEED_APP": str(absent)})
        assert baseline.systems == ("ours",) and baseline.source is None
        assert baseline.note is not None
        assert baseline.note.startswith(f"baseline: not measured: no seed app at {absent}")
        assert all(hint in baseline.note for hint in HOW_TO_ADD)

    def test_unset_it_is_looked_for_beside_the_repository(self) -> None:
        expected = (servers.REPO.parent / "shared" / "anchors" / "seed_app").resolve()
        assert servers.seed_dir({}) == servers.seed_dir({"BENCH_SEED_APP": ""}) == expected

    def test_a_seed_folder_is_measured_once_its_virtualenv_exists(self, tmp_path: Path) -> None:
        source, venv = tmp_path / "seed_app", tmp_path / "venv"
        source.mkdir()
        with pytest.raises(SystemExit, match=r"no virtualenv .*`make bench` makes it"):
            choose_baseline({"BENCH_SEED_APP": str(source)}, venv)
        (venv / "bin").mkdir(parents=True)
        (venv / "bin" / "python").touch()
        baseline = choose_baseline({"BENCH_SEED_APP": str(source)}, venv)
        assert (baseline.systems, baseline.source, baseline.note) == (SYSTEMS, source, None)

    def test_report_says_not_measured_instead_of_ratios(self, tmp_path: Path) -> None:
        summary = summarise(SOLO_ROUNDS)
        text = markdown(summary, SOLO_META)
        assert text.startswith("# Benchmark: ours (baseline: not measured)")
        assert "so there are no ratios ours/seed" in text
        assert all(hint in text for hint in HOW_TO_ADD)
        assert "seed" not in text.split("| scenario |")[1].splitlines()[0].replace("ours/seed", "")
        rows = [line for line in text.splitlines() if line.startswith("| (")]
        assert [row.split(")")[0] for row in rows] == ["| (a", "| (b", "| (g", "| (h"]
        assert rows[0].endswith("| not measured | >= 4x, p99 < 50 ms | **no** |")  # p99 60 ms
        assert rows[1].endswith("| not measured | >= 2x | n/a without the baseline |")
        assert rows[2].endswith("| not measured | p50 < 10 ms/page | yes |")
        assert "(h) ours: p99 during the login storm / p99 of (a) alone: 1.17x" in text
        assert not any(re.search(r"\d\.\d\dx \|", row) for row in rows)  # no ratio cell

    def test_json_markdown_and_chart_are_written_for_ours_alone(self, tmp_path: Path) -> None:
        pytest.importorskip("matplotlib")
        write_outputs(tmp_path, SOLO_ROUNDS, summarise(SOLO_ROUNDS), SOLO_META)
        document = json.loads((tmp_path / "results.json").read_text())
        assert document["meta"]["baseline"] == "not measured"
        assert "ratio" not in document["summary"]["a"]
        assert "baseline: not measured" in (tmp_path / "results.md").read_text()
        assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def test_a_run_without_the_seed_starts_ours_alone(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """main() end to end with the database, the servers and wrk replaced by fakes."""
        created: list[str] = []

        async def create_database(dsn: str, name: str) -> None:
            created.append(name)

        async def nothing(*args: object, **kwargs: object) -> None:
            return None

        def start_ours(dsn: str, workers: int, logdir: Path) -> servers.Server:
            return servers.Server("ours", 1, None, ("admin", "x"), workers)  # type: ignore[arg-type]

        def start_seed(*args: object) -> servers.Server:
            raise AssertionError("the seed must not be started without its folder")

        def scenario(key: str, server: servers.Server, settings: object) -> LoadResult:
            return LoadResult(100, 1.0, 100.0, 5.0, 8.0, 20.0, 6.0, 30.0, 0, 0)

        monkeypatch.setenv("BENCH_SEED_APP", str(tmp_path / "absent"))
        monkeypatch.setattr(signal, "signal", lambda *args: None)
        monkeypatch.setattr(bench.run, "require_wrk", lambda: "wrk")
        monkeypatch.setattr(bench.run, "create_database", create_database)
        monkeypatch.setattr(bench.run, "drop_database", nothing)
        monkeypatch.setattr(bench.setup, "copy_rows", nothing)
        monkeypatch.setattr(bench.setup, "migrate", lambda dsn: None)
        monkeypatch.setattr(bench.run, "run_scenario", scenario)
        monkeypatch.setattr(servers, "start_ours", start_ours)
        monkeypatch.setattr(servers, "start_seed", start_seed)
        for name in ("wait_ready", "prepare_accounts", "quiesce", "stop"):
            monkeypatch.setattr(servers, name, lambda server: None)
        monkeypatch.setattr(servers, "worker_memory", lambda server: [])
        monkeypatch.setattr(bench.report, "chart", lambda summary, path: None)

        out = tmp_path / "out"
        argv = ["--n", "10", "--rounds", "1", "--scenarios", "a,b", "--out", str(out)]
        assert bench.run.main([*argv, "--logs", str(tmp_path / "logs")]) == 0
        assert [name.rsplit("_", 1)[0] for name in created] == ["bench_ours"]
        printed = capsys.readouterr().out
        assert "baseline: not measured: no seed app at" in printed
        assert all(hint in printed for hint in HOW_TO_ADD)
        document = json.loads((out / "results.json").read_text())
        assert document["meta"]["baseline"] == "not measured"
        assert [list(r) for r in document["rounds"]] == [["ours"]]
        assert "| 100 | 5 | 20.0 | 0 | not measured |" in (out / "results.md").read_text()


@pytest.mark.ops
class TestMakeBench:
    """`make -n` prints what `make bench` would run, without running it."""

    def dry_run(self, seed_app: Path) -> str:
        if shutil.which("make") is None:
            pytest.skip("needs make: apt-get install -y make")
        result = subprocess.run(
            ["make", "-n", "bench", f"SEED_APP={seed_app}", "BENCH_ARGS=--n 10"],
            cwd=servers.REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout

    def test_without_the_seed_folder_no_seed_virtualenv_is_made(self, tmp_path: Path) -> None:
        commands = self.dry_run(tmp_path / "absent")
        assert ".venv-seed" not in commands
        assert f"BENCH_SEED_APP={tmp_path / 'absent'} " in commands
        assert "-m bench.run --n 10" in commands

    def test_with_the_seed_folder_its_virtualenv_is_made_first(self, tmp_path: Path) -> None:
        (tmp_path / "requirements.txt").write_text("uvicorn\n")
        commands = self.dry_run(tmp_path)
        assert f"bench/.venv-seed/bin/pip install -q -r {tmp_path}/requirements.txt" in commands
        assert commands.index(".venv-seed") < commands.index("-m bench.run")


@pytest.mark.postgres_only
class TestPgBouncerVariant:
    """(k) runs ours through a PgBouncer the bench starts in front of its database."""

    def test_the_variant_reaches_its_database_through_pgbouncer_while_it_runs(
        self, postgres_server: PostgresServer | None
    ) -> None:
        server = require_postgres(postgres_server)
        if find_pgbouncer() is None:
            pytest.skip(f"needs PgBouncer: {INSTALL_HINT}")
        dsn = server.url_for("postgres").replace("postgresql+asyncpg://", "postgresql://")
        with bench.variants.variant_env("k", dsn) as env:
            assert env is not None
            assert (env["DATABASE_POOL_MODE"], env["DATABASE_DIRECT_URL"]) == (
                "transaction",
                servers.asyncpg_url(dsn),
            )
            keeps = pgbouncer_version(find_pgbouncer() or "") >= (1, 21)
            assert env["DATABASE_POOLER_PREPARED_STATEMENTS"] == str(keeps).lower()
            through = make_url(env["DATABASE_URL"])
            assert through.port != make_url(dsn).port
            assert asyncio.run(current_database(through)) == "postgres"
        with pytest.raises(OSError):
            asyncio.run(current_database(through))  # stopped with the variant

    def test_without_pgbouncer_the_variant_is_skipped(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PGBOUNCER", "no-such-pgbouncer-binary")
        with bench.variants.variant_env("k", "postgresql://postgres@127.0.0.1/postgres") as env:
            assert env is None


async def current_database(url: URL) -> str:
    connection = await asyncpg.connect(asyncpg_dsn(url), statement_cache_size=0, timeout=5)
    try:
        return str(await connection.fetchval("SELECT current_database()"))
    finally:
        await connection.close()
