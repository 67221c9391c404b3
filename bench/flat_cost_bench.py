"""Per-event cost against the size of one identity's or one device's history: it must stay flat.

Three hostile shapes, each at growing sizes, run through the in-process runtime (the engine behind
replay), each size in a fresh runtime:

* flapping: one identity holding three entitlements flips between terminated and active n times;
* shared device: a device shared by n identities changes posture 40 times (per identity signal);
* mass revoke: one identity holding n entitlements is terminated, then each is revoked.

Sizes can be given as arguments (default 1000 4000 16000). Reports microseconds per event at
each size and the ratio of the largest size to the smallest
(1.0 is flat; the quadratic behaviour this replaces grew with n). Also: how long a YAML alias
bomb takes to be refused as a policy file, with the peak memory of this process.

Prints a readable report on standard error and one JSON object on standard output. Speed and
memory are measured here, never in timed tests.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from accessdrift.alerts.sinks import DiscardSink
from accessdrift.models.clock import US_PER_S, parse_us
from accessdrift.models.errors import PolicyError
from accessdrift.models.messages import DevicePosture, EntitlementChange, InputMessage, StatusChange
from accessdrift.models.policy import Policy, load_policy
from accessdrift.streams.engine import Engine
from accessdrift.streams.local import LocalRuntime

SIZES = (1_000, 4_000, 16_000)
T0 = parse_us("2026-01-05T09:00:00Z")


def _grant(
    identity_id: str, event_id: str, at_us: int, system: str, action: str
) -> EntitlementChange:
    return EntitlementChange(
        identity_id,
        event_id,
        at_us,
        system,
        "role",
        action,
        "role",
        False,
        None,
        False,  # type: ignore[arg-type]
    )


def flapping(n: int) -> Iterator[InputMessage]:
    for system in ("github", "aws", "slack"):
        yield _grant("alice", f"g-{system}", T0, system, "granted")
    for number in range(n):
        status = "terminated" if number % 2 == 0 else "active"
        yield StatusChange(
            "alice", f"s{number}", T0 + (number + 1) * US_PER_S, status, "human", None, None
        )  # type: ignore[arg-type]


def shared_device(n: int) -> Iterator[InputMessage]:
    members = tuple(f"u{number}" for number in range(n))
    for number in range(40):
        posture = ("compliant", "noncompliant", "lost", "compliant")[number % 4]
        yield DevicePosture("kiosk", f"d{number}", T0 + number * US_PER_S, posture, members)  # type: ignore[arg-type]


def mass_revoke(n: int) -> Iterator[InputMessage]:
    for number in range(n):
        yield _grant("alice", f"g{number}", T0, f"system{number}", "granted")
    yield StatusChange("alice", "t", T0 + US_PER_S, "terminated", "human", None, None)
    for number in range(n):
        yield _grant("alice", f"r{number}", T0 + 2 * US_PER_S, f"system{number}", "revoked")


def _per_event_us(shape: Callable[[int], Iterator[InputMessage]], n: int, per: str) -> float:
    messages = list(shape(n))
    runtime = LocalRuntime(Engine(Policy(), grace_s=60), DiscardSink())
    started = time.perf_counter()
    for message in messages:
        runtime.submit(message, max(T0, message.occurred_at_us))
    elapsed = time.perf_counter() - started
    # What grows with n in each shape: status events, identity signals, revokes.
    count = {"events": len(messages), "signals": 40 * n, "revokes": n}[per]
    return elapsed / count * 1e6


def _bomb_refusal() -> dict[str, float]:
    # Aliases nested nine deep reach a validated field: 9^9 strings if expanded.
    bomb = (
        "x:\n  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        + "".join(
            f"  {n}: &{n} [{', '.join(['*' + p] * 9)}]\n"
            for p, n in zip("abcdefgh", "bcdefghi", strict=True)
        )
        + "leaver: {window: *i}\n"
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bomb.yaml"
        path.write_text(bomb)
        started = time.perf_counter()
        try:
            load_policy(path)
            refused = False
        except PolicyError:
            refused = True
        elapsed_ms = (time.perf_counter() - started) * 1000
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"refused": float(refused), "ms": elapsed_ms, "peak_rss_mib": peak_mib}


def main() -> None:
    sizes = tuple(int(n) for n in sys.argv[1:]) or SIZES
    results: dict[str, object] = {}
    for name, shape, per in (
        ("flapping", flapping, "events"),
        ("shared_device", shared_device, "signals"),
        ("mass_revoke", mass_revoke, "revokes"),
    ):
        costs = {n: _per_event_us(shape, n, per) for n in sizes}
        ratio = costs[sizes[-1]] / costs[sizes[0]]
        results[name] = {"us_per_" + per.rstrip("s"): costs, "ratio_largest_to_smallest": ratio}
        shown = ", ".join(f"n={n:,}: {cost:.1f} µs" for n, cost in costs.items())
        print(f"{name:<14} per {per.rstrip('s'):<7} {shown}  (ratio {ratio:.2f})", file=sys.stderr)
    bomb = _bomb_refusal()
    results["yaml_alias_bomb"] = bomb
    print(
        f"YAML alias bomb policy: refused={bool(bomb['refused'])} in {bomb['ms']:.1f} ms, "
        f"peak RSS {bomb['peak_rss_mib']:.0f} MiB",
        file=sys.stderr,
    )
    json.dump(results, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
