"""Benchmark: our job vs the tutorial's row-by-row style vs the I/O floor (`python -m bench`).

Each measurement runs in a fresh process; wall time is measured around the child, peak RSS is the child's own
`ru_maxrss` from `os.wait4`. Results: median of `--runs` runs, written as a Markdown table to `--results`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "bench" / "data"


@dataclass(frozen=True)
class Approach:
    name: str
    label: str
    argv: tuple[str, ...]  # {input} and {output} are substituted
    env: tuple[tuple[str, str], ...] = ()  # extra environment of the child


APPROACHES = (
    Approach("ours", "(a) our job, default settings",
             ("-m", "processing", "--input", "{input}", "--output", "{output}")),
    Approach("memory", "(a') our job, --mode memory", ("-m", "processing", "--mode", "memory", "--input", "{input}",
                                                       "--output", "{output}")),
    Approach("streaming", "(a'') our job, --mode streaming", ("-m", "processing", "--mode", "streaming", "--input",
                                                              "{input}", "--output", "{output}")),
    Approach("bounded", "(a*) our job, default settings, PROCESSING_MAX_ROWS_IN_MEMORY=1000000",
             ("-m", "processing", "--input", "{input}", "--output", "{output}"),
             (("PROCESSING_MAX_ROWS_IN_MEMORY", "1000000"),)),
    Approach("spark1", "(s1) our job, --engine spark, local[1]",
             ("-m", "bench.spark_run", "--master", "local[1]", "--", "--input", "{input}", "--output", "{output}")),
    Approach("spark2", "(s2) our job, --engine spark, local[2]",
             ("-m", "bench.spark_run", "--master", "local[2]", "--", "--input", "{input}", "--output", "{output}")),
    Approach("baseline", "(b) tutorial row-by-row pandas", ("-m", "bench.baseline", "{input}", "{output}")),
    Approach("floor", "(c) floor: pyarrow CSV -> Parquet", ("-m", "bench.floor", "{input}", "{output}")),
)
OURS = ("ours", "memory", "streaming", "bounded")
TARGETS = (  # issue 5, for (a) at 1M and 5M rows
    ("throughput >= 10x the tutorial style (b)", lambda a, b, c: b.seconds / a.seconds, lambda r: r >= 10, "{:.1f}x"),
    ("wall time <= 2x the floor (c)", lambda a, b, c: a.seconds / c.seconds, lambda r: r <= 2, "{:.2f}x"),
    ("peak memory <= the floor's (c)", lambda a, b, c: a.peak_rss_mb / c.peak_rss_mb, lambda r: r <= 1, "{:.2f}x"),
)


@dataclass(frozen=True)
class Sample:
    seconds: float
    peak_rss_mb: float
    mode: str = ""  # our job's processing mode (from its metrics.json)


def dataset(rows: int, seed: int) -> Path:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"reference-{rows}-{seed}.csv"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        subprocess.run(
            [sys.executable, "-m", "processing.sample", "--rows", str(rows), "--seed", str(seed), "--out", str(tmp)],
            check=True, cwd=ROOT,
        )
        tmp.rename(path)
    return path


def measure(approach: Approach, input_path: Path) -> Sample:
    with tempfile.TemporaryDirectory(prefix=f"bench-{approach.name}-") as out:
        argv = [sys.executable] + [a.format(input=input_path, output=Path(out) / "out") for a in approach.argv]
        env = dict(os.environ, PYTHONPATH=str(ROOT), **dict(approach.env))
        # stderr goes to a file, not a pipe: a chatty child must not block on a full pipe while we wait for it.
        with open(Path(out) / "stderr.txt", "w+b") as err:
            start = time.perf_counter()
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
            err.seek(0)
            stderr = err.read().decode(errors="replace")
        if proc.returncode != 0:
            raise SystemExit(f"{approach.name} failed on {input_path.name} (exit {proc.returncode}):\n{stderr[-2000:]}")
        metrics = Path(out) / "out" / "quality" / "metrics.json"
        mode = json.loads(metrics.read_text()).get("mode", "") if metrics.exists() else ""
    return Sample(seconds=seconds, peak_rss_mb=usage.ru_maxrss / 1024, mode=mode)  # ru_maxrss is KiB on Linux


def machine() -> str:
    cpus = os.cpu_count()
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{platform.system()} {platform.machine()}, {cpus} cores ({model}), {mem_gib:.0f} GiB RAM, "
            f"Python {platform.python_version()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--rows", default="20000,1000000,5000000", help="comma-separated dataset sizes")
    parser.add_argument("--runs", type=int, default=3, help="runs per approach and size (median reported)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--approaches", default="ours,memory,baseline,floor",
                        help=f"comma-separated, from: {','.join(a.name for a in APPROACHES)}")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)

    chosen = [a for a in APPROACHES if a.name in args.approaches.split(",")]
    sizes = [int(r) for r in args.rows.split(",")]
    medians: dict[tuple[str, int], Sample] = {}
    for rows in sizes:
        path = dataset(rows, args.seed)
        samples: dict[str, list[Sample]] = {a.name: [] for a in chosen}
        # Round-robin (a, b, c, a, b, c, ...): a slow phase of the shared machine hits every approach alike, so the
        # ratios of one run are comparable.
        for run in range(args.runs):
            for approach in chosen:
                sample = measure(approach, path)
                samples[approach.name].append(sample)
                print(f"{rows:>9} {approach.name:<9} run {run + 1}: {sample.seconds:7.2f} s "
                      f"{sample.peak_rss_mb:8.0f} MB", flush=True)
        for approach in chosen:
            medians[(approach.name, rows)] = Sample(
                seconds=statistics.median(s.seconds for s in samples[approach.name]),
                peak_rss_mb=statistics.median(s.peak_rss_mb for s in samples[approach.name]),
                mode="/".join(sorted({s.mode for s in samples[approach.name]} - {""})),
            )
        write_report(args, chosen, [r for r in sizes if all((a.name, r) in medians for a in chosen)], medians)
    return 0


def write_report(args: argparse.Namespace, chosen: list[Approach], sizes: list[int],
                 medians: dict[tuple[str, int], Sample]) -> None:
    """Write the results table (after every size, so a long run that is stopped keeps what it measured)."""
    rows_out: list[str] = []
    header = "| rows | approach | wall s (median) | rows/s | peak RSS MB | time a/b | time a/c | memory a/c |"
    rows_out += [header, "|---|---|---|---|---|---|---|---|"]
    for rows in sizes:
        for approach in chosen:
            m = medians[(approach.name, rows)]
            ratios = ["", "", ""]
            if approach.name in OURS:
                b, c = medians.get(("baseline", rows)), medians.get(("floor", rows))
                if b:
                    ratios[0] = f"{m.seconds / b.seconds:.2f} ({b.seconds / m.seconds:.1f}x faster)"
                if c:
                    ratios[1] = f"{m.seconds / c.seconds:.2f}"
                    ratios[2] = f"{m.peak_rss_mb / c.peak_rss_mb:.2f}"
            label = approach.label + (f" [ran: {m.mode}]" if m.mode else "")
            rows_out.append(
                f"| {rows:,} | {label} | {m.seconds:.2f} | {rows / m.seconds:,.0f} | {m.peak_rss_mb:,.0f} | "
                + " | ".join(ratios) + " |"
            )
    table = "\n".join(rows_out) + _targets(sizes, medians)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    changed = subprocess.run(["git", "status", "--porcelain", "--", ".",
                              f":!{args.results.resolve().relative_to(ROOT)}"]
                             if args.results.resolve().is_relative_to(ROOT) else ["git", "status", "--porcelain"],
                             cwd=ROOT, capture_output=True, text=True)
    code = (commit.stdout.strip() + (" with uncommitted changes" if changed.stdout.strip() else "")
            if commit.returncode == 0 else "unknown (not a git checkout)")
    report = (
        f"# Benchmark results\n\nRun {stamp} with `python -m bench --rows {args.rows} --runs {args.runs}`.\n\n"
        f"Machine: {machine()}.\n\nEach cell: median of {args.runs} runs, each in a fresh process (interpreter start "
        f"and imports included), approaches interleaved round-robin, memory not pre-touched (cold, as a job starts). "
        f"Wall time is measured around the child; peak RSS is the child's own `ru_maxrss` (from `wait4`). "
        f"Input: `python -m processing.sample --rows N --seed {args.seed}` (CSV, ~256 bytes/row). "
        f"Load average when written: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (the machine is shared; "
        f"compare ratios from the same run). Code: `{code}`.\n\n{table}\n"
    )
    args.results.write_text(report)
    print("\n" + table)
    print(f"\nwritten to {args.results}", flush=True)


def _targets(sizes: list[int], medians: dict[tuple[str, int], Sample]) -> str:
    """The issue's targets for (a), met or missed, from the medians above (sizes of 1M rows and more)."""
    big = [r for r in sizes if r >= 1_000_000 and all((n, r) in medians for n in ("ours", "baseline", "floor"))]
    if not big:
        return ""
    lines = ["", "", "## Against the targets (computed from the table above, approach (a))", "",
             "| target | " + " | ".join(f"{r:,} rows" for r in big) + " |", "|---|" + "---|" * len(big)]
    for name, ratio, ok, fmt in TARGETS:
        cells = []
        for r in big:
            value = ratio(medians[("ours", r)], medians[("baseline", r)], medians[("floor", r)])
            cells.append(fmt.format(value) + (" met" if ok(value) else " **missed**"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
