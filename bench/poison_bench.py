"""Poison at 1 %: a worker reading a backlog with 1 % poison records (`streams/poison.py`, every
kind) against the same backlog clean, in one run. Target: within 10 % of the clean rate. The
poisoned run's dead-letter count must equal the injected count and its findings the simulator's
ground truth, so the rate never comes from skipping work.

Each rate is input records (events and poison) per second from the first to the last counted,
the best of two runs per side, alternated, each by a new consumer group. Prints a table on
standard error and one JSON object on standard output (`--json FILE` keeps it). Options:
`--identities` (default 2,500: about 36,000 events), `--seed`.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from common import emit
from live_bench import STREAMS, _check, _load, _load_clock, _workers, backlog

from accessdrift.streams.broker import EmbeddedBroker, stop_process_group
from accessdrift.streams.poison import mix, record_of

TARGET_RATIO = 0.9
SHARE = 0.01


async def _count(bootstrap: str, topic: str, expected: int) -> int:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    seen, idle = 0, 0
    try:
        while seen < expected + 1 and idle < 10:
            batch = await consumer.getmany(timeout_ms=500)
            got = sum(len(messages) for messages in batch.values())
            seen, idle = seen + got, 0 if got else idle + 1
    finally:
        await consumer.stop()
    return seen


def _topics(run: str, name: str) -> dict[str, str]:
    topics = {stream: f"{run}.{name}.{stream}" for stream in STREAMS}
    topics["findings"] = f"{run}.{name}.findings"
    topics["deadletter"] = f"{run}.{name}.deadletter"
    return topics


def main() -> None:
    args, loaded = backlog(__doc__)
    count, lines, clock = loaded.count, loaded.lines, loaded.clock
    records = mix(lines, SHARE, args.seed)
    injected = sum(r.poison is not None for r in records)
    run = uuid.uuid4().hex[:6]
    clean, poisoned = _topics(run, "clean"), _topics(run, "poisoned")
    print(f"bench: {count:,} events, {injected:,} poison records mixed in", file=sys.stderr)
    results: dict[str, Any] = {"events": count, "poison": injected, "share": SHARE}
    rates: dict[str, list[float]] = {"clean": [], "poisoned": []}
    with tempfile.TemporaryDirectory() as scratch, EmbeddedBroker() as broker:
        home = Path(scratch)
        asyncio.run(_load(broker.bootstrap, clean, [record_of(line) for line in lines]))
        asyncio.run(_load(broker.bootstrap, poisoned, records))
        for attempt in range(2):
            for name, topics, expected in (
                ("clean", clean, count),
                ("poisoned", poisoned, len(records)),
            ):
                print(f"bench: {name} traffic, run {attempt + 1} ...", file=sys.stderr)
                rate, workers = _workers(broker, topics, expected, home)
                rates[name].append(rate)
                try:
                    if name == "poisoned" and attempt == 0:
                        asyncio.run(_load_clock(broker.bootstrap, topics, clock))
                        results["agrees_with_truth"], results["truth"] = _check(
                            broker.bootstrap, topics["findings"], loaded.truth_text
                        )
                        results["deadlettered"] = asyncio.run(
                            _count(broker.bootstrap, topics["deadletter"], injected)
                        )
                finally:
                    for worker in workers:
                        stop_process_group(worker, timeout_s=20)
    results["clean"] = max(rates["clean"])
    results["poisoned"] = max(rates["poisoned"])
    results["rates"] = rates
    results["poisoned_vs_clean"] = results["poisoned"] / results["clean"]
    results["deadletter_exact"] = results["deadlettered"] == injected
    results["met"] = (
        results["poisoned_vs_clean"] >= TARGET_RATIO
        and results["deadletter_exact"]
        and results["agrees_with_truth"]
    )
    print(
        f"clean {results['clean']:,.0f} records/s, poisoned {results['poisoned']:,.0f} records/s: "
        f"{results['poisoned_vs_clean']:.2f}x (target {TARGET_RATIO:.2f}x); dead letters "
        f"{results['deadlettered']:,} of {injected:,} injected; findings: {results['truth']}",
        file=sys.stderr,
    )
    emit(results, args.json)


if __name__ == "__main__":
    main()
