"""The benchmarks of `make bench` side by side: each measured figure, its target or anchor,
and the ratio, from the JSON the benchmarks wrote to `bench/out/` in this run."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("out")


def _load(name: str) -> dict[str, Any]:
    return dict(json.loads((OUT / f"{name}.json").read_text()))


Row = tuple[str, str, str, str, str]


def _met(met: bool) -> str:
    return "met" if met else "NOT MET"


def rows() -> list[Row]:
    """(benchmark, measured, target or anchor, ratio, verdict)."""
    replay, live, latency = _load("replay"), _load("live"), _load("latency")
    memory, recovery, poison = _load("memory"), _load("recovery"), _load("poison")
    end_to_end = replay["end_to_end"]
    found: list[Row] = [
        (
            f"1 replay, {replay['events']:,} events",
            f"{end_to_end['events_per_s']:,.0f} ev/s",
            "100,000 ev/s",
            f"{replay['end_to_end_vs_target']:.2f}x",
            _met(replay["end_to_end_vs_target"] >= 1),
        ),
        (
            "2 live worker vs bare faust",
            f"{live['worker']:,.0f} ev/s",
            f"3x faust ({live['faust']:,.0f})",
            f"{live['worker_vs_faust']:.2f}x",
            _met(live["worker_vs_faust"] >= 3 and live["worker"] >= 20_000),
        ),
        (
            "3 latency, steady p99",
            f"{latency['steady']['p99_s']:.2f} s",
            "1 s",
            f"{1 / max(latency['steady']['p99_s'], 1e-9):.2f}x",
            _met(latency["steady"]["p99_s"] < 1),
        ),
        (
            f"3 latency, burst of {latency['burst_events']:,}",
            f"max {latency['burst']['max_s']:.1f} s late",
            f"on time after {latency['burst']['caught_up_after_s']:.0f} s",
            "-",
            "reported",
        ),
    ]
    for row in memory["results"]:
        per_identity = row["bytes_per_identity"]
        found.append(
            (
                f"4 memory, {row['store']}, {row['identities']:,}",
                f"{per_identity:,.0f} B/identity",
                "2,048 B",
                f"{2048 / max(per_identity, 1.0):.2f}x",
                _met(per_identity < 2048),
            )
        )
    found.append(
        (
            f"5 recovery, {recovery['identities']:,} identities",
            f"{recovery['ready_s']:.1f} s",
            "60 s",
            f"{recovery['vs_target']:.2f}x",
            _met(recovery["ready_s"] < 60),
        )
    )
    found.append(
        (
            "6 scale-out, two workers vs one",
            f"{live['two_workers']:,.0f} ev/s",
            f"one worker ({live['worker']:,.0f})",
            f"{live['two_workers_vs_one']:.2f}x",
            "agrees" if live["two_workers_agree_with_truth"] else "DISAGREES with the truth",
        )
    )
    found.append(
        (
            f"7 poison at {poison['share']:.0%}, {poison['poison']:,} records",
            f"{poison['poisoned']:,.0f} rec/s",
            f"90% of clean ({poison['clean']:,.0f})",
            f"{poison['poisoned_vs_clean']:.2f}x",
            _met(poison["met"]),
        )
    )
    return found


def main() -> None:
    table = rows()
    print(f"machine: {platform.machine()}, Python {platform.python_version()}", file=sys.stderr)
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for name, measured, target, ratio, verdict in table:
        print(
            f"{name:<{widths[0]}}  {measured:>{widths[1]}}  {target:<{widths[2]}}  "
            f"{ratio:>{widths[3]}}  {verdict}",
            file=sys.stderr,
        )
    json.dump(
        [
            dict(zip(("benchmark", "measured", "target", "ratio", "verdict"), r, strict=True))
            for r in table
        ],
        sys.stdout,
        indent=2,
    )
    print()


if __name__ == "__main__":
    main()
