"""Medians over rounds, ratios ours/seed (when the seed was measured), verdicts, and the three
outputs under bench/results/."""

import json
import statistics
from pathlib import Path
from typing import Any

from bench.scenarios import SCENARIOS
from bench.servers import SEED_DEFAULT

SYSTEMS = ("ours", "seed")
NOT_MEASURED = "not measured"
ADD_BASELINE = (
    f"put the seed app's source at {SEED_DEFAULT.as_posix()} (beside the repository) or point at "
    "it: `make bench SEED_APP=<path>`, or `BENCH_SEED_APP=<path> python -m bench.run`"
)
SHORT = {
    "a": "get one",
    "b": "page",
    "c": "city filter",
    "d": "create",
    "e": "patch",
    "f": "login",
    "g": "walk (pages/s)",
    "h": "(a) in storm",
    "i": "(a) limits on",
    "j": "(a) compression off",
    "k": "(a) via PgBouncer",
}
RATIO_TARGETS = {"a": 4.0, "b": 2.0, "c": 10.0, "d": 2.0, "e": 2.0, "f": 1.0}


def summarise(rounds: list[dict[str, dict[str, dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    """Per scenario and system: medians of rps/p50/p99 over the rounds, non-2xx added up."""
    summary: dict[str, dict[str, Any]] = {}
    keys = [k for k in SCENARIOS if any(k in r.get(s, {}) for r in rounds for s in SYSTEMS)]
    for key in keys:
        row: dict[str, Any] = {}
        for system in SYSTEMS:
            runs = [r[system][key] for r in rounds if key in r.get(system, {})]
            if not runs:
                continue
            row[system] = {
                "rps": statistics.median(run["rps"] for run in runs),
                "p50_ms": statistics.median(run["p50_ms"] for run in runs),
                "p99_ms": statistics.median(run["p99_ms"] for run in runs),
                "non2xx": sum(run["non2xx"] for run in runs),
                "errors": sum(run["errors"] for run in runs),
                "rounds": len(runs),
                "requests": statistics.median(run["requests"] for run in runs),
            }
        if "ours" in row and "seed" in row:
            seed_rps = row["seed"]["rps"]
            row["ratio"] = round(row["ours"]["rps"] / seed_rps, 2) if seed_rps else None
        summary[key] = row
    for system in SYSTEMS:
        alone, storm = summary.get("a", {}).get(system), summary.get("h", {}).get(system)
        if alone and storm and alone["p99_ms"]:
            # None: no request of (a) finished while the storm ran (a stalled server)
            ratio = storm["p99_ms"] / alone["p99_ms"] if storm["requests"] else None
            storm["p99_vs_alone"] = round(ratio, 2) if ratio is not None else None
    alone = summary.get("a", {}).get("ours")
    for key in ("i", "j", "k"):
        variant = summary.get(key, {}).get("ours")
        runs = [run for run in (r.get("ours", {}).get(key) for r in rounds) if run]
        paired = [
            run["rps"] / run["extra"]["reference_rps"]
            for run in runs
            if run.get("extra", {}).get("reference_rps")
        ]
        labels = [run["extra"]["pgbouncer"] for run in runs if "pgbouncer" in run.get("extra", {})]
        if variant and labels:
            variant["pgbouncer"] = labels[0]
        if variant and paired:
            # Each run against (a) measured right before and after it: the median of those ratios
            variant["rps_vs_alone"] = round(statistics.median(paired), 2)
        elif alone and variant and alone["rps"]:
            variant["rps_vs_alone"] = round(variant["rps"] / alone["rps"], 2)
    for key, row in summary.items():
        row["met"] = verdict(key, row)
    return summary


def verdict(key: str, row: dict[str, Any]) -> bool | None:
    """Whether our numbers meet the issue's target for this scenario (None: not measurable)."""
    ours = row.get("ours")
    if ours is None:
        return None
    if key == "g":
        return bool(ours["p50_ms"] < 10)
    if key == "h":
        if "p99_vs_alone" not in ours:
            return None
        return bool(ours["p99_vs_alone"] is not None and ours["p99_vs_alone"] <= 2)
    if key == "i":
        return bool(ours["rps_vs_alone"] >= 0.85) if "rps_vs_alone" in ours else None
    if key == "j":  # (a), compression on, at least 0.97x of this, compression off
        return bool(1 / ours["rps_vs_alone"] >= 0.97) if ours.get("rps_vs_alone") else None
    if key == "k":
        return bool(ours["rps_vs_alone"] >= 0.8) if "rps_vs_alone" in ours else None
    if key == "a" and "seed" not in row and ours["p99_ms"] >= 50:
        return False  # missed whatever the ratio would have been
    if row.get("ratio") is None:
        return None
    met = bool(row["ratio"] >= RATIO_TARGETS[key])
    return met and ours["p99_ms"] < 50 if key == "a" else met


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}" if value < 10 else f"{value:.1f}"


def failures(side: dict[str, Any]) -> str:
    text = str(side["non2xx"])
    return f"{text} (+{side['errors']} err)" if side["errors"] else text


def measured(meta: dict[str, Any]) -> tuple[str, ...]:
    """The systems a run measured: both, unless its meta says the baseline was not measured."""
    return ("ours",) if meta.get("baseline") == NOT_MEASURED else SYSTEMS


def markdown(summary: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    systems = measured(meta)
    solo = systems == ("ours",)
    lines = [
        f"# Benchmark: ours (baseline: {NOT_MEASURED})"
        if solo
        else "# Benchmark: ours vs the seed baseline",
        "",
        f"N = {meta['n']:,} employees; {meta['rounds']} rounds of {meta['duration']:g} s "
        f"(after {meta['warmup']:g} s warm-up) per scenario{'' if solo else ' and system'}; "
        f"wrk {meta['connections']} connections, {meta['threads']} threads; "
        f"{meta['workers']} uvicorn workers{'' if solo else ' each'}; {meta['cpus']} CPUs shared "
        f"by wrk, {'the server' if solo else 'both servers'} and PostgreSQL; {meta['date']}.",
        "Medians over the rounds (non-2xx added up). Latencies in ms; (g) counts pages per second.",
    ]
    if solo:
        lines += [
            "",
            f"Baseline: {NOT_MEASURED} (no seed app was found), so there are no ratios ours/seed, "
            "and the targets expressed as ratios are n/a without the baseline. To add it, "
            f"{ADD_BASELINE}.",
        ]
    lines += ["", *table(summary, systems), "", *notes(summary, meta)]
    return "\n".join(lines) + "\n"


def table(summary: dict[str, dict[str, Any]], systems: tuple[str, ...]) -> list[str]:
    header = "| scenario |"
    for system in systems:
        header += f" {system} req/s | {system} p50 | {system} p99 | {system} non-2xx |"
    lines = [
        header + " ours/seed | target | met? |",
        "|---|" + "--:|" * (4 * len(systems) + 1) + "---|---|",
    ]
    for key, row in summary.items():
        cells = [f"({key}) {SCENARIOS[key].title}"]
        for system in systems:
            side = row.get(system)
            if not side:
                cells += ["-"] * 4
            elif not side["requests"]:
                cells += ["0", "none finished", "none finished", failures(side)]
            else:
                cells += [
                    fmt(side["rps"]),
                    fmt(side["p50_ms"]),
                    fmt(side["p99_ms"]),
                    failures(side),
                ]
        met = {True: "yes", False: "**no**", None: "n/a"}[row["met"]]
        if "seed" in systems:
            ratio = f"{row['ratio']:.2f}x" if row.get("ratio") else "-"
        else:
            ratio = NOT_MEASURED
            if row["met"] is None and key in RATIO_TARGETS:
                met = "n/a without the baseline"
        cells += [ratio, SCENARIOS[key].target, met]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def notes(summary: dict[str, dict[str, Any]], meta: dict[str, Any]) -> list[str]:
    out = []
    storm = summary.get("h", {})
    for system in SYSTEMS:
        if "p99_vs_alone" not in storm.get(system, {}):
            continue
        ratio = storm[system]["p99_vs_alone"]
        text = f"{ratio:.2f}x" if ratio is not None else "no request finished during the storm"
        out.append(f"- (h) {system}: p99 during the login storm / p99 of (a) alone: {text}")
    limited = summary.get("i", {}).get("ours", {})
    if "rps_vs_alone" in limited:
        out.append(
            "- (i) ours: throughput with request limits on (Redis) / (a) with them off: "
            f"{limited['rps_vs_alone']:.2f}x"
        )
    plain = summary.get("j", {}).get("ours", {})
    if plain.get("rps_vs_alone"):
        out.append(
            "- (j) ours: throughput of (a), compression on / compression off: "
            f"{1 / plain['rps_vs_alone']:.2f}x"
        )
    pooled = summary.get("k", {}).get("ours", {})
    if "rps_vs_alone" in pooled:
        out.append(
            "- (k) ours: throughput through PgBouncer (transaction mode) / (a) direct: "
            f"{pooled['rps_vs_alone']:.2f}x"
            + (f", {pooled['pgbouncer']}" if pooled.get("pgbouncer") else "")
        )
    for system in SYSTEMS:
        workers = meta.get("memory", {}).get(system)
        if workers:
            peaks = ", ".join(f"{w['VmHWM'] / 1024:.0f}" for w in workers)
            out.append(f"- Peak RSS per worker (VmHWM, MB), {system}: {peaks}")
    for system, soak in meta.get("soak", {}).items():
        out.append(soak_line(system, soak))
    if meta["n"] < 1_000_000 and "g" in summary:
        out.append("- The (g) target is set for N = 1,000,000 (`make bench BENCH_ARGS=--million`).")
    out.append(f"- Command: `{meta['command']}`")
    return out


def soak_line(system: str, soak: dict[str, Any]) -> str:
    """RSS per worker at the end of the mixed load and its growth since minute 1."""
    parts, met = [], True
    for worker in soak["workers"]:
        end_mb = worker["rss_end_kb"] / 1024
        growth = (worker["rss_end_kb"] / worker["rss_first_kb"] - 1) * 100
        met = met and end_mb < 150 and growth < 10
        parts.append(f"{end_mb:.0f} MB ({growth:+.1f}%)")
    verdict = ("target met" if met else "**target missed**") if system == "ours" else "baseline"
    return (
        f"- Memory after {soak['minutes']:g} min of mixed load ({soak['rps']:,.0f} req/s, "
        f"{soak['non2xx']} failed), {system}, RSS per worker (growth since minute 1): "
        f"{', '.join(parts)}; target < 150 MB and < 10%: {verdict}"
    )


def write_outputs(
    outdir: Path, rounds: list[dict[str, Any]], summary: dict[str, Any], meta: dict[str, Any]
) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    document = {"meta": meta, "summary": summary, "rounds": rounds}
    (outdir / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    (outdir / "results.md").write_text(markdown(summary, meta))
    chart(summary, outdir / "chart.png")


def chart(summary: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k, row in summary.items() if row.get("ratio")]
    if not keys:
        solo_chart(summary, path)
        return
    ratios = [summary[k]["ratio"] for k in keys]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    colours = ["tab:green" if summary[k]["met"] else "tab:red" for k in keys]
    ax.bar([f"({k})\n{SHORT[k]}" for k in keys], ratios, color=colours)
    for i, key in enumerate(keys):
        if key in RATIO_TARGETS:
            ax.hlines(RATIO_TARGETS[key], i - 0.4, i + 0.4, colors="black", linestyles="dashed")
        ax.annotate(f"{ratios[i]:.2f}x", (i, ratios[i]), ha="center", va="bottom", fontsize=8)
    ax.axhline(1, color="grey", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("throughput ours / seed (log)")
    ax.set_title("Ours vs seed per scenario (dashed: target ratio; green: target met)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def solo_chart(summary: dict[str, dict[str, Any]], path: Path) -> None:
    """Without the seed there are no ratios: our throughput per scenario instead."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k, row in summary.items() if row.get("ours")]
    rates = [summary[k]["ours"]["rps"] for k in keys]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.bar([f"({k})\n{SHORT[k]}" for k in keys], rates, color="tab:blue")
    for i, rate in enumerate(rates):
        ax.annotate(fmt(rate), (i, rate), ha="center", va="bottom", fontsize=8)
    if any(rates):
        ax.set_yscale("log")
    ax.set_ylabel("ours: requests/s ((g): pages/s; log)")
    ax.set_title(f"Ours per scenario (baseline: {NOT_MEASURED}, so no ratios)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
