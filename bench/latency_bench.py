"""Detection latency in wall-clock mode: how long after deadline + grace a finding is on the
findings topic, with a steady feed, then with a burst of reconciliation events on top of it.

A worker (wall clock, 1 s grace, leaver windows of 2 s) reads a steady feed: every `--interval`
seconds a new identity is granted a privileged role and terminated, and the role is never
revoked, so each termination must produce exactly one finding at termination + 2 s + 1 s. The
bench reads the findings topic and takes, per finding, the wall time it arrived minus that due
time: p50, p99 and max, for the steady part and for the part after a burst of `--burst`
reconciliation events (grants repeated for identities that hold them) was sent at once; and how
long after the burst began findings were on time again (under a second late).

Prints a table on standard error and one JSON object on standard output (`--json FILE`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from common import create_topics, emit, start_worker, worker_env

from accessdrift.models.clock import US_PER_S, parse_us
from accessdrift.streams.broker import EmbeddedBroker, free_port, stop_process_group

WINDOW_S = 2
GRACE_S = 1
POLICY = f'[leaver]\nwindow = "{WINDOW_S}s"\nprivileged_window = "{WINDOW_S}s"\n'


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class Bench:
    def __init__(self, broker: EmbeddedBroker, home: Path, args: argparse.Namespace) -> None:
        self.broker = broker
        self.home = home
        self.args = args
        run = uuid.uuid4().hex[:6]
        self.topics = {
            "identity.status": f"{run}.status",
            "entitlement.change": f"{run}.changes",
            "device.posture": f"{run}.devices",
            "access.exception": f"{run}.exceptions",
            "findings": f"{run}.findings",
        }
        self.arrivals: list[tuple[float, float]] = []  # (arrived wall s, due wall s)
        self.burst_at: float | None = None
        self.burst_sent_s = 0.0

    def start_worker(self) -> subprocess.Popen[bytes]:
        (self.home / "policy.toml").write_text(POLICY)
        env = worker_env(
            self.broker.bootstrap, f"latency-{uuid.uuid4().hex[:6]}", self.home / "policy.toml",
            self.home / "data", free_port(), self.topics, GRACE_S=str(GRACE_S),
        )  # fmt: skip
        return start_worker(env, self.home, self.home / "worker.log")

    async def send(self, producer: AIOKafkaProducer, stream: str, value: dict[str, Any]) -> None:
        key = value["identity_id"].encode()
        await producer.send(self.topics[stream], msgspec.json.encode(value), key=key)

    async def feed(self, producer: AIOKafkaProducer, count: int, tag: str) -> None:
        for number in range(count):
            who = f"{tag}-{number}"
            grant = {"event_id": f"{who}-g", "occurred_at": _now(), "identity_id": who,
                     "system": "github", "entitlement": "admin", "action": "granted",
                     "privileged": True}  # fmt: skip
            await self.send(producer, "identity.status", {
                "event_id": f"{who}-a", "occurred_at": _now(), "identity_id": who,
                "status": "active"})  # fmt: skip
            await self.send(producer, "entitlement.change", grant)
            await asyncio.sleep(self.args.interval / 2)
            await self.send(producer, "identity.status", {
                "event_id": f"{who}-t", "occurred_at": _now(), "identity_id": who,
                "status": "terminated"})  # fmt: skip
            await asyncio.sleep(self.args.interval / 2)

    async def burst(self, producer: AIOKafkaProducer) -> None:
        """Reconciliation: the warm-up identities' grant, still held, asserted again and again
        (which changes nothing but costs the worker a message each)."""
        self.burst_at = time.time()
        for number in range(self.args.burst):
            who = f"warm-{number % self.args.warm}"
            await self.send(producer, "entitlement.change", {
                "event_id": f"burst-{number}", "occurred_at": _now(), "identity_id": who,
                "system": "github", "entitlement": "admin", "action": "granted",
                "privileged": True})  # fmt: skip
            if number % 100_000 == 99_999:
                print(f"bench: {number + 1:,} burst events sent", file=sys.stderr)
        await producer.flush()
        self.burst_sent_s = time.time() - self.burst_at

    async def watch(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            self.topics["findings"], bootstrap_servers=self.broker.bootstrap,
            auto_offset_reset="earliest",
        )  # fmt: skip
        await consumer.start()
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=100)
                arrived = time.time()
                for messages in batch.values():
                    for message in messages:
                        record = json.loads(message.value)
                        if record["record_type"] != "finding" or record["status"] != "open":
                            continue
                        due = parse_us(record["deadline"]) / US_PER_S + GRACE_S
                        self.arrivals.append((arrived, due))
        finally:
            await consumer.stop()

    async def run(self) -> dict[str, Any]:
        await create_topics(self.broker.bootstrap, list(self.topics.values()))
        worker = self.start_worker()
        try:
            log = self.home / "worker.log"
            deadline = time.monotonic() + 90
            while b"Worker]: Ready" not in log.read_bytes():
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise RuntimeError(log.read_text(errors="replace")[-3000:])
                await asyncio.sleep(0.2)
            producer = AIOKafkaProducer(bootstrap_servers=self.broker.bootstrap, linger_ms=2)
            await producer.start()
            stop = asyncio.Event()
            watcher = asyncio.create_task(self.watch(stop))
            try:
                # Warm-up identities hold a grant the burst repeats; their findings count too.
                await self.feed(producer, self.args.warm, "warm")
                await self.feed(producer, self.args.steady, "steady")
                feeding = asyncio.create_task(self.feed(producer, self.args.steady, "during"))
                await self.burst(producer)
                await feeding
                await asyncio.sleep(WINDOW_S + GRACE_S + 5)
                expected = self.args.warm + 2 * self.args.steady
                until = time.monotonic() + 600
                while len(self.arrivals) < expected and time.monotonic() < until:
                    await asyncio.sleep(0.5)
            finally:
                stop.set()
                await watcher
                await producer.stop()
        finally:
            stop_process_group(worker, timeout_s=20)
        return self.summary()

    def summary(self) -> dict[str, Any]:
        assert self.burst_at is not None
        # Steady: what arrived before the burst; burst: everything after it began.
        steady = [a - d for a, d in self.arrivals if a < self.burst_at]
        after = [(a, a - d) for a, d in self.arrivals if a >= self.burst_at]
        lags = [lag for _, lag in after]
        # When the last finding a second or more late arrived: from then on, on time again.
        late = [a for a, lag in after if lag >= 1.0]
        return {
            "findings": len(self.arrivals),
            "burst_events": self.args.burst,
            "steady": {"p50_s": _percentile(steady, 0.5), "p99_s": _percentile(steady, 0.99),
                       "max_s": max(steady), "findings": len(steady)},
            "burst": {"p50_s": _percentile(lags, 0.5), "p99_s": _percentile(lags, 0.99),
                      "max_s": max(lags), "findings": len(lags),
                      "caught_up_after_s": (max(late) - self.burst_at) if late else 0.0,
                      "sent_in_s": self.burst_sent_s},
        }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steady", type=int, default=100, help="terminations per phase")
    parser.add_argument("--warm", type=int, default=50, help="identities the burst repeats")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between identities")
    parser.add_argument("--burst", type=int, default=1_000_000, help="reconciliation events")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, EmbeddedBroker() as broker:
        results = asyncio.run(Bench(broker, Path(scratch), args).run())
    print(f"{'feed':<10}{'findings':>10}{'p50 s':>8}{'p99 s':>8}{'max s':>8}", file=sys.stderr)
    for name in ("steady", "burst"):
        part = results[name]
        print(
            f"{name:<10}{part['findings']:>10}{part['p50_s']:>8.2f}{part['p99_s']:>8.2f}"
            f"{part['max_s']:>8.2f}",
            file=sys.stderr,
        )
    print(
        f"a burst of {args.burst:,} events (sent in {results['burst']['sent_in_s']:.1f} s) put "
        f"findings up to {results['burst']['max_s']:.1f} s late; they were on time (under 1 s) "
        f"again {results['burst']['caught_up_after_s']:.1f} s after it began (target: steady "
        "p99 < 1 s)",
        file=sys.stderr,
    )
    emit(results, args.json)


if __name__ == "__main__":
    main()
