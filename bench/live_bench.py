"""Live throughput: one worker on the embedded broker consuming a pre-loaded backlog, next to its
anchors in the same run: (a) a bare faust app whose agents only count the same records, and (b) a
bare aiokafka consumer reading them. The worker's findings are checked against the simulator's
ground truth, so its speed never comes from skipping work.

Each rate is events from the first to the last record seen (group joins excluded). The broker
shares this machine's two cores with whatever is measured. Then two workers of a new group read
the same backlog (scale-out), checked against the truth as well.

Prints a table on standard error and one JSON object on standard output (`--json FILE` keeps it).
Options: `--identities` (default 2,500: about 36,000 events), `--seed`.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from common import PARTITIONS, create_topics, emit, metrics_text, start_worker, worker_env

from accessdrift.models.clock import format_us
from accessdrift.models.findings import decode_record
from accessdrift.streams.broker import EmbeddedBroker, free_port, stop_process_group
from accessdrift.streams.poison import RawRecord, record_of
from accessdrift.streams.simulate import SimulationSettings, compare, read_truth, write_simulation

STREAMS = ("identity.status", "device.posture", "entitlement.change", "access.exception")
GRACE_S = 3600
TARGET_EVENTS_PER_S = 20_000
TARGET_VS_FAUST = 3.0


async def _load(bootstrap: str, topics: dict[str, str], records: list[RawRecord]) -> None:
    await create_topics(bootstrap, list(topics.values()))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    await producer.start()
    try:
        for record in records:
            await producer.send(topics[record.stream], record.value, key=record.key)
        await producer.flush()
    finally:
        await producer.stop()


@dataclass(frozen=True)
class Backlog:
    """The simulated organisation a benchmark loads: its events, truth, and a last event dated
    past every deadline (moves the event clock there)."""

    settings: SimulationSettings
    count: int
    obligations: int
    lines: list[dict[str, Any]]
    truth_text: str
    clock: dict[str, Any]


def backlog(doc: str) -> tuple[argparse.Namespace, Backlog]:
    """The command line shared by the throughput benchmarks, and the backlog it asks for."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--identities", type=int, default=2500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    settings = SimulationSettings(identities=args.identities, seed=args.seed)
    events, truth_text = io.StringIO(), io.StringIO()
    count, obligations = write_simulation(settings, events, truth_text)
    lines = [json.loads(line) for line in events.getvalue().splitlines()]
    clock = {"topic": "device.posture", "value": {
        "event_id": "clock", "occurred_at": format_us(settings.until_us + GRACE_S * 10**6),
        "device_id": "clock", "posture": "enrolled", "identity_ids": ["clock"]}}  # fmt: skip
    return args, Backlog(settings, count, obligations, lines, truth_text.getvalue(), clock)


async def _bare_aiokafka(bootstrap: str, topics: list[str], expected: int) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        seen, started = 0, time.perf_counter()
        while seen < expected:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            seen += sum(len(messages) for messages in batch.values())
        return expected / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def _bare_faust(bootstrap: str, topics: list[str], expected: int, home: Path) -> float:
    log = home / "bare-faust.out"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("bare_faust.py")), bootstrap,
             str(expected), str(free_port()), *topics],
            stdout=output, stderr=subprocess.STDOUT, cwd=home, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            # faust prefixes what the app prints with its log format: find the JSON in the line.
            marks = [json.loads(m[0]) for m in re.finditer(r"\{[^{}]*\}", log.read_text())]
            first = next((m["first"] for m in marks if "first" in m), None)
            last = next((m["last"] for m in marks if "last" in m), None)
            if first is not None and last is not None:
                return expected / (last - first)
            if process.poll() is not None:
                raise RuntimeError(f"bare faust app exited:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        raise RuntimeError("bare faust app did not read the backlog in 10 minutes")
    finally:
        stop_process_group(process, timeout_s=20)


def _consumed(metrics_url: str) -> float:
    return sum(
        float(value)
        for value in re.findall(
            r"^accessdrift_events_total\{[^}]*\} (\S+)$", metrics_text(metrics_url), re.M
        )
    )


def _workers(
    broker: EmbeddedBroker, topics: dict[str, str], expected: int, home: Path, count: int = 1
) -> tuple[float, list[subprocess.Popen[bytes]]]:
    """`count` workers of one new group reading the backlog: their events/s together."""
    (home / "policy.toml").write_text("")
    app_id = f"bench-{uuid.uuid4().hex[:6]}"
    processes, urls = [], []
    for number in range(count):
        port = free_port()
        env = worker_env(
            broker.bootstrap, app_id, home / "policy.toml", home / f"data-{app_id}-{number}",
            port, topics, GRACE_S=str(GRACE_S), CLOCK="event",
        )  # fmt: skip
        log = home / f"worker-{app_id}-{number}.log"
        processes.append(start_worker(env, home, log))
        urls.append(f"http://127.0.0.1:{port}/metrics")
    first = None
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        consumed = sum(_consumed(url) for url in urls)
        if consumed and first is None:
            first = (time.perf_counter(), consumed)
        if consumed >= expected and first is not None:
            return (expected - first[1]) / (time.perf_counter() - first[0]), processes
        for number, process in enumerate(processes):
            if process.poll() is not None:
                log = home / f"worker-{app_id}-{number}.log"
                raise RuntimeError(f"worker exited:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    raise RuntimeError("the workers did not consume the backlog in 30 minutes")


def _check(bootstrap: str, topic: str, truth_text: str) -> tuple[bool, str]:
    values = asyncio.run(_findings(bootstrap, topic))
    truth, evidence = read_truth(truth_text.splitlines())
    agreement = compare(truth, evidence, [decode_record(v) for v in values])
    return agreement.agrees, agreement.describe()


async def _findings(bootstrap: str, topic: str, quiet_s: float = 10.0) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    values: list[bytes] = []
    try:
        last = time.monotonic()
        while time.monotonic() - last < quiet_s:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                values.extend(m.value for m in messages)
                last = time.monotonic()
    finally:
        await consumer.stop()
    return values


def main() -> None:
    args, loaded = backlog(__doc__)
    count, obligations, lines, clock = loaded.count, loaded.obligations, loaded.lines, loaded.clock
    run = uuid.uuid4().hex[:6]
    topics = {stream: f"{run}.{stream}" for stream in STREAMS}
    topics["findings"] = f"{run}.findings"
    print(f"bench: {count:,} events over {args.identities:,} identities", file=sys.stderr)
    results: dict[str, Any] = {"events": count, "identities": args.identities}
    with tempfile.TemporaryDirectory() as scratch, EmbeddedBroker() as broker:
        home = Path(scratch)
        asyncio.run(_load(broker.bootstrap, topics, [record_of(line) for line in lines]))
        inputs = [topics[s] for s in STREAMS]
        print("bench: measuring a bare aiokafka consumer ...", file=sys.stderr)
        results["aiokafka"] = asyncio.run(_bare_aiokafka(broker.bootstrap, inputs, count))
        print("bench: measuring a bare faust agent ...", file=sys.stderr)
        results["faust"] = _bare_faust(broker.bootstrap, inputs, count, home)
        print("bench: measuring the worker ...", file=sys.stderr)
        rate, workers = _workers(broker, topics, count, home)
        results["worker"] = rate
        try:
            asyncio.run(_load_clock(broker.bootstrap, topics, clock))
            results["agrees_with_truth"], results["truth"] = _check(
                broker.bootstrap, topics["findings"], loaded.truth_text
            )
        finally:
            for worker in workers:
                stop_process_group(worker, timeout_s=20)
        # Scale-out: the same backlog (now with the clock event at its end) read by two workers
        # of a new group, publishing to a topic of their own, checked against the truth again.
        print("bench: measuring two workers ...", file=sys.stderr)
        two = {**topics, "findings": f"{run}.findings-2"}
        asyncio.run(create_topics(broker.bootstrap, [two["findings"]]))
        rate, workers = _workers(broker, two, count + 1, home, count=2)
        results["two_workers"] = rate
        try:
            agrees, described = _check(broker.bootstrap, two["findings"], loaded.truth_text)
        finally:
            for worker in workers:
                stop_process_group(worker, timeout_s=20)
        results["two_workers_agree_with_truth"] = agrees
    results["obligations"] = obligations
    results["worker_vs_faust"] = results["worker"] / results["faust"]
    results["worker_vs_aiokafka"] = results["worker"] / results["aiokafka"]
    results["two_workers_vs_one"] = results["two_workers"] / results["worker"]
    print(f"{'consumer':<22}{'events/s':>12}", file=sys.stderr)
    for name in ("aiokafka", "faust", "worker", "two_workers"):
        print(f"{name:<22}{results[name]:>12,.0f}", file=sys.stderr)
    print(
        f"worker: {results['worker_vs_faust']:.2f}x a bare faust agent (target "
        f"{TARGET_VS_FAUST:.0f}x), {results['worker'] / TARGET_EVENTS_PER_S:.2f}x the "
        f"{TARGET_EVENTS_PER_S:,} events/s target; findings: {results['truth']}; two workers: "
        f"{results['two_workers_vs_one']:.2f}x one, findings: {described}",
        file=sys.stderr,
    )
    emit(results, args.json)


async def _load_clock(bootstrap: str, topics: dict[str, str], clock: dict[str, Any]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        value = clock["value"]
        await producer.send_and_wait(
            topics["device.posture"], msgspec.json.encode(value), key=value["device_id"].encode()
        )
    finally:
        await producer.stop()


if __name__ == "__main__":
    main()
