"""Replay benchmark: a simulated organisation's history (`accessdrift simulate`) through replay,
next to the time merely to read and to decode the same file, checked against the ground truth.

Phases, each in its own process so that peak memory is per phase:

* read: the lines read from the file and nothing else (the floor any replay pays);
* decode: each line to an engine message on the hot path (msgspec, `models/decoding.py`);
* decode_contract: the same through the pydantic contract (what decode would cost without the
  fast path);
* end_to_end: `replay` itself (merge within the lateness, decode, engine, records as JSON lines),
  its records compared with the simulator's ground truth: speed never comes from skipping work;
* engine: the engine step alone over messages decoded beforehand, in arrival order.

Prints a table on standard error and one JSON object on standard output (also written to
`--json FILE`). Run with `make bench`; options: `--identities`, `--seed`.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import emit

from accessdrift.alerts.sinks import DiscardSink, JsonLinesSink
from accessdrift.models.decoding import decode_message_line
from accessdrift.models.events import decode_line
from accessdrift.models.findings import decode_record
from accessdrift.models.policy import Policy
from accessdrift.streams.engine import Engine
from accessdrift.streams.local import LocalRuntime
from accessdrift.streams.replay import DEFAULT_LATENESS_S, replay
from accessdrift.streams.simulate import SimulationSettings, compare, read_truth, write_simulation

TARGET_EVENTS_PER_S = 100_000
#: About 14 events per simulated identity: 75,000 identities make a history of over a million.
DEFAULT_IDENTITIES = 75_000


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_read(path: Path, truth: Path) -> dict[str, Any]:
    del truth
    started = time.perf_counter()
    count = 0
    with path.open("rb") as stream:
        for _ in stream:
            count += 1
    return {"events": count, "seconds": time.perf_counter() - started}


def phase_decode(path: Path, truth: Path) -> dict[str, Any]:
    del truth
    started = time.perf_counter()
    count = 0
    with path.open("rb") as stream:
        for line in stream:
            decode_message_line(line)
            count += 1
    return {"events": count, "seconds": time.perf_counter() - started}


def phase_decode_contract(path: Path, truth: Path) -> dict[str, Any]:
    del truth
    started = time.perf_counter()
    count = 0
    with path.open("rb") as stream:
        for line in stream:
            decode_line(line)[1].to_message()
            count += 1
    return {"events": count, "seconds": time.perf_counter() - started}


def phase_end_to_end(path: Path, truth: Path) -> dict[str, Any]:
    output = io.BytesIO()
    settings = SimulationSettings()
    started = time.perf_counter()
    with path.open("rb") as stream:
        summary = replay(
            [(str(path), stream)],
            Engine(Policy()),
            JsonLinesSink(output),
            JsonLinesSink(output),
            errors=sys.stderr,
            until_us=settings.until_us,
            lateness_s=DEFAULT_LATENESS_S,
        )
    elapsed = time.perf_counter() - started
    with truth.open() as stream:
        obligations, evidence = read_truth(stream)
    records = [decode_record(line) for line in output.getvalue().splitlines()]
    agreement = compare(obligations, evidence, records)
    return {
        "events": summary.lines,
        "seconds": elapsed,
        "findings_opened": summary.opened,
        "findings_resolved": summary.resolved,
        "offboarding_records": summary.offboarding,
        "agrees_with_truth": agreement.agrees,
        "truth": agreement.describe(),
    }


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def phase_engine(path: Path, truth: Path) -> dict[str, Any]:
    del truth
    with path.open("rb") as stream:
        messages = [decode_message_line(line)[1] for line in stream]
    messages.sort(key=lambda m: m.occurred_at_us)
    runtime = LocalRuntime(Engine(Policy()), DiscardSink())
    clock_us = 0
    before = _rss_bytes()
    started = time.perf_counter()
    for message in messages:
        if message.occurred_at_us > clock_us:
            clock_us = message.occurred_at_us
            runtime.advance(clock_us)
        runtime.submit(message, clock_us)
    elapsed = time.perf_counter() - started
    states = runtime.store.identities
    grants = sum(len(state.grants) for state in states.values())
    return {
        "events": len(messages),
        "seconds": elapsed,
        "identities_in_memory": len(states),
        "grants_per_identity": grants / max(1, len(states)),
        # What the state of one identity costs in memory: resident growth while it was built.
        "bytes_per_identity": (_rss_bytes() - before) / max(1, len(states)),
    }


PHASES = {
    "read": phase_read,
    "decode": phase_decode,
    "decode_contract": phase_decode_contract,
    "end_to_end": phase_end_to_end,
    "engine": phase_engine,
}


def _run_phase(name: str, path: Path, truth: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, __file__, "--phase", name, str(path), str(truth)],
        check=True,
        capture_output=True,
        text=True,
    )
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--identities", type=int, default=DEFAULT_IDENTITIES)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        result = PHASES[args.phase](*args.paths)
        result["peak_rss_mib"] = _peak_rss_mib()
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory() as scratch:
        path, truth = Path(scratch) / "history.jsonl", Path(scratch) / "truth.jsonl"
        print(f"bench: simulating {args.identities:,} identities ...", file=sys.stderr)
        started = time.perf_counter()
        settings = SimulationSettings(identities=args.identities, seed=args.seed)
        with path.open("w") as events, truth.open("w") as truth_out:
            count, obligations = write_simulation(settings, events, truth_out)
        print(
            f"bench: {count:,} events, {obligations:,} obligations "
            f"({path.stat().st_size / 2**20:,.0f} MiB) in {time.perf_counter() - started:.1f}s",
            file=sys.stderr,
        )
        results: dict[str, Any] = {"events": count, "identities": args.identities}
        for name in PHASES:
            print(f"bench: measuring {name} ...", file=sys.stderr)
            phase = _run_phase(name, path, truth)
            phase["events_per_s"] = phase["events"] / phase["seconds"]
            phase["us_per_event"] = phase["seconds"] / phase["events"] * 1e6
            results[name] = phase
    end_to_end = results["end_to_end"]
    results["target_events_per_s"] = TARGET_EVENTS_PER_S
    results["end_to_end_vs_target"] = end_to_end["events_per_s"] / TARGET_EVENTS_PER_S
    results["end_to_end_vs_decode"] = end_to_end["us_per_event"] / results["decode"]["us_per_event"]
    print(f"{'phase':<16}{'events/s':>12}{'us/event':>10}{'peak MiB':>10}", file=sys.stderr)
    for name in PHASES:
        phase = results[name]
        print(
            f"{name:<16}{phase['events_per_s']:>12,.0f}{phase['us_per_event']:>10.2f}"
            f"{phase['peak_rss_mib']:>10,.0f}",
            file=sys.stderr,
        )
    engine = results["engine"]
    print(
        f"memory: {engine['bytes_per_identity']:,.0f} bytes per identity in memory "
        f"({engine['identities_in_memory']:,} identities, "
        f"{engine['grants_per_identity']:.1f} grants each; target 2,048)",
        file=sys.stderr,
    )
    print(
        f"end to end: {results['end_to_end_vs_target']:.2f}x the {TARGET_EVENTS_PER_S:,} "
        f"events/s target, {results['end_to_end_vs_decode']:.1f}x the cost of decoding alone; "
        f"{end_to_end['truth']}",
        file=sys.stderr,
    )
    emit(results, args.json)
    if not end_to_end["agrees_with_truth"]:
        sys.exit("bench: replay does not agree with the ground truth")


if __name__ == "__main__":
    main()
