"""Replay benchmark: a synthetic organisation's history through decode, engine and output.

Generates a history of over a million events across 100,000+ identities (joiners, movers, leavers,
suspensions, lost devices, owned non-human identities, exceptions), then measures, each phase in
its own process so that peak memory is per phase:

* decode: JSON line to validated event to engine message (pydantic at the edge);
* end_to_end: `replay` itself, decode + engine + findings written as JSON lines;
* engine: the engine step alone over messages decoded beforehand.

Prints one JSON object (machine-readable) on standard output and a readable report on standard
error. Run with `make bench`; options: `--identities`, `--seed`, `--keep FILE`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from accessdrift.alerts.sinks import DiscardSink, JsonLinesSink
from accessdrift.models.clock import US_PER_S, format_us, parse_us
from accessdrift.models.events import decode_line
from accessdrift.models.policy import Policy
from accessdrift.streams.engine import Engine
from accessdrift.streams.local import LocalRuntime
from accessdrift.streams.replay import replay

TARGET_EVENTS_PER_S = 100_000
START_US = parse_us("2026-01-01T00:00:00Z")
DAY_US = 86_400 * US_PER_S
HOUR_US = 3_600 * US_PER_S
MINUTE_US = 60 * US_PER_S
SYSTEMS = ["github", "aws", "okta", "slack", "jira", "salesforce", "vpn", "snowflake", "pagerduty"]
ROLES = ["engineer", "sales", "support", "finance", "manager", "designer", "sre"]


class _History:
    """Builds (time, line) pairs with a deterministic random source."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.events: list[tuple[int, bytes]] = []
        self.serial = 0

    def add(self, stream: str, at_us: int, **value: Any) -> None:
        self.serial += 1
        value = {"event_id": f"e{self.serial}", "occurred_at": format_us(at_us), **value}
        self.events.append((at_us, msgspec.json.encode({"topic": stream, "value": value})))

    def person(self, identity_id: str) -> None:
        rng = self.rng
        joined = START_US + rng.randrange(10 * DAY_US)
        role = rng.choice(ROLES)
        self.add("identity.status", joined, identity_id=identity_id, status="active", role=role)
        device = f"dev-{identity_id}"
        if rng.random() < 0.95:
            enrolled = joined + rng.randrange(20 * HOUR_US)
            self.add(
                "device.posture",
                enrolled,
                device_id=device,
                posture="compliant",
                identity_ids=[identity_id],
            )
        held: list[dict[str, Any]] = []
        for index in range(7):
            kind = rng.choices(["role", "group", "session", "token"], [60, 20, 15, 5])[0]
            grant = {
                "identity_id": identity_id,
                "system": rng.choice(SYSTEMS),
                "entitlement": f"{kind}-{index}",
                "kind": kind,
                "privileged": rng.random() < 0.2,
            }
            if kind == "session":
                grant["device_id"] = device
            self.add(
                "entitlement.change",
                joined + rng.randrange(2 * DAY_US),
                action="granted",
                **grant,
            )
            held.append(grant)
        life_end = START_US + 90 * DAY_US
        fate = rng.random()
        if fate < 0.06:
            self._leaves(identity_id, role, held, joined + rng.randrange(3 * DAY_US, 80 * DAY_US))
        elif fate < 0.16:
            moved = joined + rng.randrange(3 * DAY_US, 80 * DAY_US)
            new_role = rng.choice([r for r in ROLES if r != role])
            self.add(
                "identity.status", moved, identity_id=identity_id, status="active", role=new_role
            )
            for grant in held:
                if grant["privileged"] and rng.random() < 0.9:
                    self._revoke(grant, moved + rng.randrange(5 * DAY_US))
        elif fate < 0.19:
            suspended = joined + rng.randrange(3 * DAY_US, 60 * DAY_US)
            self.add(
                "identity.status", suspended, identity_id=identity_id, status="suspended", role=role
            )
            for grant in held:
                if grant["kind"] in ("session", "token"):
                    self._revoke(grant, suspended + rng.randrange(90 * MINUTE_US))
            self.add(
                "identity.status",
                suspended + rng.randrange(2 * DAY_US, 10 * DAY_US),
                identity_id=identity_id,
                status="active",
                role=role,
            )
        elif fate < 0.21:
            lost = joined + rng.randrange(3 * DAY_US, 80 * DAY_US)
            self.add(
                "device.posture", lost, device_id=device, posture="lost", identity_ids=[identity_id]
            )
            for grant in held:
                if grant["kind"] == "session":
                    self._revoke(grant, lost + rng.randrange(30 * MINUTE_US))
        else:
            for grant in held[:1]:
                self._revoke(grant, min(life_end, joined + rng.randrange(5 * DAY_US, 80 * DAY_US)))

    def _leaves(self, identity_id: str, role: str, held: list[dict[str, Any]], at_us: int) -> None:
        self.add("identity.status", at_us, identity_id=identity_id, status="terminated", role=role)
        for grant in held:
            if self.rng.random() < 0.97:
                late = self.rng.random() < 0.1
                delay = (
                    self.rng.randrange(2 * DAY_US) if late else self.rng.randrange(50 * MINUTE_US)
                )
                self._revoke(grant, at_us + delay)

    def _revoke(self, grant: dict[str, Any], at_us: int) -> None:
        fields = {k: v for k, v in grant.items() if k in ("identity_id", "system", "entitlement")}
        self.add("entitlement.change", at_us, action="revoked", **fields)

    def machine(self, identity_id: str, owner_id: str) -> None:
        created = START_US + self.rng.randrange(20 * DAY_US)
        self.add(
            "identity.status",
            created,
            identity_id=identity_id,
            status="active",
            identity_kind=self.rng.choice(["service_account", "api_key", "workload", "ai_agent"]),
            owner_id=owner_id,
        )
        for index in range(2):
            self.add(
                "entitlement.change",
                created + self.rng.randrange(DAY_US),
                identity_id=identity_id,
                system=self.rng.choice(SYSTEMS),
                entitlement=f"token-{index}",
                action="granted",
                kind="token",
                privileged=True,
            )
        if self.rng.random() < 0.02:
            self.add(
                "access.exception",
                created + DAY_US,
                exception_id=f"EXC-{identity_id}",
                identity_id=identity_id,
                expires_at=format_us(created + 30 * DAY_US),
                reason="migration",
                approved_by="ciso",
            )


def generate(path: Path, people: int, machines: int, seed: int) -> tuple[int, int]:
    """Write a time-ordered history to `path`; returns (events, identities)."""
    history = _History(seed)
    for number in range(people):
        history.person(f"u{number:06d}")
    for number in range(machines):
        history.machine(f"nhi{number:05d}", f"u{history.rng.randrange(people):06d}")
    history.events.sort(key=lambda pair: pair[0])
    with path.open("wb") as out:
        for _, line in history.events:
            out.write(line + b"\n")
    return len(history.events), people + machines


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_decode(path: Path) -> dict[str, float]:
    lines = path.read_bytes().splitlines()
    started = time.perf_counter()
    for line in lines:
        decode_line(line)[1].to_message()
    elapsed = time.perf_counter() - started
    return {"events": len(lines), "seconds": elapsed, "peak_rss_mib": _peak_rss_mib()}


def phase_end_to_end(path: Path) -> dict[str, float]:
    output = io.BytesIO()
    started = time.perf_counter()
    with path.open("rb") as stream:
        summary = replay(
            [(str(path), stream)],
            Engine(Policy()),
            JsonLinesSink(output),
            JsonLinesSink(output),
            errors=sys.stderr,
        )
    elapsed = time.perf_counter() - started
    return {
        "events": summary.lines,
        "seconds": elapsed,
        "peak_rss_mib": _peak_rss_mib(),
        "findings_opened": summary.opened,
        "findings_resolved": summary.resolved,
        "offboarding_records": summary.offboarding,
        "output_mib": len(output.getvalue()) / 2**20,
    }


def phase_engine(path: Path) -> dict[str, float]:
    messages = [decode_line(line)[1].to_message() for line in path.read_bytes().splitlines()]
    runtime = LocalRuntime(Engine(Policy()), DiscardSink())
    clock_us = 0
    started = time.perf_counter()
    for message in messages:
        if message.occurred_at_us > clock_us:
            clock_us = message.occurred_at_us
            runtime.advance(clock_us)
        runtime.submit(message, clock_us)
    elapsed = time.perf_counter() - started
    return {"events": len(messages), "seconds": elapsed, "peak_rss_mib": _peak_rss_mib()}


PHASES = {"decode": phase_decode, "end_to_end": phase_end_to_end, "engine": phase_engine}


def _run_phase(name: str, path: Path) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, __file__, "--phase", name, str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    data: dict[str, float] = json.loads(result.stdout)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--identities", type=int, default=100_000, help="people (default 100000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="write the generated history here and keep it")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("input", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(PHASES[args.phase](args.input)))
        return

    with tempfile.TemporaryDirectory() as scratch:
        path = args.keep or Path(scratch) / "history.jsonl"
        print(f"bench: generating a history for {args.identities:,} people ...", file=sys.stderr)
        started = time.perf_counter()
        events, identities = generate(path, args.identities, args.identities // 20, args.seed)
        size_mib = os.path.getsize(path) / 2**20
        print(
            f"bench: {events:,} events over {identities:,} identities "
            f"({size_mib:,.0f} MiB) in {time.perf_counter() - started:.1f}s",
            file=sys.stderr,
        )
        results: dict[str, Any] = {"events": events, "identities": identities}
        for name in ("decode", "end_to_end", "engine"):
            print(f"bench: measuring {name} ...", file=sys.stderr)
            phase = _run_phase(name, path)
            phase["events_per_s"] = phase["events"] / phase["seconds"]
            phase["us_per_event"] = phase["seconds"] / phase["events"] * 1e6
            results[name] = phase
    end_to_end = results["end_to_end"]["events_per_s"]
    results["target_events_per_s"] = TARGET_EVENTS_PER_S
    results["end_to_end_vs_target"] = end_to_end / TARGET_EVENTS_PER_S
    results["engine_share_of_end_to_end"] = (
        results["engine"]["seconds"] / results["end_to_end"]["seconds"]
    )
    for name in ("decode", "end_to_end", "engine"):
        phase = results[name]
        print(
            f"  {name:<11} {phase['events_per_s']:>10,.0f} events/s  "
            f"{phase['us_per_event']:6.2f} us/event  peak {phase['peak_rss_mib']:,.0f} MiB",
            file=sys.stderr,
        )
    print(
        f"  end to end is {results['end_to_end_vs_target']:.2f}x the "
        f"{TARGET_EVENTS_PER_S:,} events/s target; the engine step is "
        f"{results['engine_share_of_end_to_end']:.0%} of end-to-end time; "
        f"{results['end_to_end']['findings_opened']:,} findings opened",
        file=sys.stderr,
    )
    print(json.dumps(results, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
