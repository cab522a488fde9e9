"""`python -m bench.run`: ours vs the seed on the same data, or ours alone when the seed app is
not there; results under bench/results/."""

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from bench import bulk, servers
from bench.data import create_database, database_dsn, drop_database, unique_name
from bench.report import NOT_MEASURED, markdown, summarise, write_outputs
from bench.scenarios import SCENARIOS, Settings, memory_soak, run_scenario
from bench.servers import log
from bench.setup import choose_baseline, migrate, prepare
from bench.variants import VARIANTS, run_variant
from bench.wrk import require_wrk

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--n", type=int, default=100_000, help="employees to seed")
    parser.add_argument("--million", action="store_true", help="N = 1,000,000")
    parser.add_argument(
        "--dsn",
        default=os.environ.get("BENCH_DSN", DEFAULT_DSN),
        help="maintenance database DSN (env BENCH_DSN); bench databases are "
        "created next to it and dropped at the end",
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up first")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers per system")
    parser.add_argument("--storm-connections", type=int, default=50, help="(h) login clients")
    parser.add_argument("--walk-budget", type=float, default=300, help="(g) max seconds a walk")
    parser.add_argument(
        "--memory-minutes",
        type=float,
        default=0,
        help="then a mixed load this long per system, RSS sampled at minute 1 and the end",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join([*SCENARIOS, *bulk.SCENARIOS]),
        help="e.g. a,b,g; (l) and (m) are the bulk import and export (200,000 rows, or "
        "1,000,000 with --million)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--logs", type=Path, help="keep the servers' stderr logs in this folder")
    return parser.parse_args(argv)


def scenario_keys(text: str) -> list[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    known = [*SCENARIOS, *bulk.SCENARIOS]
    unknown = sorted(set(keys) - set(known))
    if unknown:
        raise SystemExit(f"unknown scenarios: {', '.join(unknown)} (known: {', '.join(known)})")
    if {"h", "i", "j", "k"} & set(keys) and "a" not in keys:
        keys.insert(0, "a")  # (h) to (k) are judged against (a) in the same round
    return [k for k in known if k in keys]


def run_bulk(args: argparse.Namespace, keys: list[str]) -> None:
    """(l) and (m) first, before any server runs; their own outputs, bulk.md and bulk.json."""
    n = 1_000_000 if args.million else bulk.DEFAULT_ROWS
    log(f"bulk scenarios {','.join(keys)} on {n:,} rows")
    results = bulk.run_bulk(
        args.dsn, keys, n, create=create_database, drop=drop_database, migrate=migrate, log=log
    )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["python -m bench.run", *sys.argv[1:]])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bulk.json").write_text(
        json.dumps({"date": when, "command": command, "results": [r.to_dict() for r in results]})
        + "\n"
    )
    text = bulk.markdown(results, when, command)
    (args.out / "bulk.md").write_text(text)
    print(text)


def on_sigterm(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def measure(
    args: argparse.Namespace,
    logdir: Path,
    keys: list[str],
    running: dict[str, servers.Server],
    settings: Settings,
    systems: tuple[str, ...],
) -> list[dict[str, Any]]:
    rounds = []
    for number in range(args.rounds):
        # Alternate who goes first so drift (caches, autovacuum) does not favour one side.
        order = systems if number % 2 == 0 else systems[::-1]
        results: dict[str, Any] = {system: {} for system in systems}
        for key in keys:
            for system in order:
                if key in VARIANTS and system != "ours":
                    continue  # variants of ours, not of the seed
                # The other system may still be working through requests its last load queued
                # (the seed hashes on its event loop after a login storm): it would take this
                # run's CPU. Both go quiet first.
                for server in running.values():
                    servers.quiesce(server)
                if key in VARIANTS:
                    variant = run_variant(
                        key, args.workers, settings.dsn_by_system["ours"], logdir, running, settings
                    )
                    if variant is None:
                        continue
                    result = variant
                else:
                    result = run_scenario(key, running[system], settings)
                results[system][key] = result.to_dict()
                log(
                    f"round {number + 1} ({key}) {system}: {result.rps:,.1f} req/s, "
                    f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
                    f"non-2xx {result.non2xx}, errors {result.errors}"
                )
        rounds.append(results)
    return rounds


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keys = scenario_keys(args.scenarios)
    bulk_keys = [k for k in keys if k in bulk.SCENARIOS]
    keys = [k for k in keys if k in SCENARIOS]
    if bulk_keys:
        run_bulk(args, bulk_keys)
        if not keys:
            return 0
    require_wrk()
    n = 1_000_000 if args.million else args.n
    baseline = choose_baseline()
    if baseline.note:
        log(baseline.note)
    systems = baseline.systems
    names = {system: unique_name(f"bench_{system}") for system in systems}
    dsns = {system: database_dsn(args.dsn, name) for system, name in names.items()}
    logdir = args.logs or Path(tempfile.mkdtemp(prefix="bench-logs-"))
    logdir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, on_sigterm)
    running: dict[str, servers.Server] = {}
    created: list[str] = []
    failed = True
    started = time.monotonic()
    try:
        for name in names.values():
            asyncio.run(create_database(args.dsn, name))
            created.append(name)
        prepare(args, n, dsns, logdir, running, baseline)
        for server in running.values():
            servers.wait_ready(server)
            servers.prepare_accounts(server)
        up = "both servers up" if len(systems) > 1 else f"ours up, the seed {NOT_MEASURED}"
        each = " each" if len(systems) > 1 else ""
        log(f"{up} ({args.workers} workers{each}); scenarios {','.join(keys)}")
        settings = Settings(
            dsns,
            n,
            args.duration,
            args.warmup,
            args.connections,
            args.threads,
            args.storm_connections,
            args.walk_budget,
        )
        rounds = measure(args, logdir, keys, running, settings, systems)
        memory = {system: servers.worker_memory(running[system]) for system in systems}
        soak = {}
        for system in systems if args.memory_minutes > 0 else ():
            log(f"memory soak: {args.memory_minutes:g} min of mixed load on {system}")
            soak[system] = memory_soak(running[system], settings, args.memory_minutes)
        failed = False
    finally:
        for server in running.values():
            servers.stop(server)
        for name in created:
            asyncio.run(drop_database(args.dsn, name))
        if failed:
            for path in sorted(logdir.glob("*.log")):
                print(
                    f"--- {path.name} (last lines)\n"
                    + "\n".join(path.read_text().splitlines()[-20:])
                )
        if args.logs is None:
            shutil.rmtree(logdir, ignore_errors=True)
    meta = {
        "n": n,
        "rounds": args.rounds,
        "duration": args.duration,
        "warmup": args.warmup,
        "connections": args.connections,
        "threads": args.threads,
        "workers": args.workers,
        "storm_connections": args.storm_connections,
        "baseline": "seed" if baseline.source is not None else NOT_MEASURED,
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_seconds": round(time.monotonic() - started, 1),
        "memory": memory,
        "soak": soak,
        "command": " ".join(["python -m bench.run", *(sys.argv[1:] if argv is None else argv)]),
    }
    summary = summarise(rounds)
    write_outputs(args.out, rounds, summary, meta)
    print(markdown(summary, meta))
    log(f"wrote {args.out}/results.md, results.json, chart.png in {meta['wall_seconds']:.0f} s")
    if baseline.note:
        log(baseline.note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
