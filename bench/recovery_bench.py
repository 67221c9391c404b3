"""Recovery: a fresh worker restoring a million identities from the changelog until it is ready.

The bench builds each identity's state with the engine (active, a compliant laptop and about ten
grants: `bench/states.py`), writes it to the `identities` table's changelog topic on the embedded
broker exactly as a worker would (key: identity id, value: the stored state, on the partition
of the table's partitioner), then starts a worker of that app on the memory store and measures
the time until it is ready: faust has restored the table, and every identity partition has been
built (deadline index and census from the table) and fires against a clock. Ready is only
counted when the worker's census reports exactly the obligations the bench wrote, so speed never
comes from skipping work.

Prints a table on standard error and one JSON object on standard output (`--json FILE`).
Options: `--identities` (default 1,000,000).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from common import PARTITIONS, create_topics, emit, metrics_text, start_worker, worker_env
from states import STATE_BATCH, identity_states

from accessdrift.streams.broker import EmbeddedBroker, free_port, stop_process_group
from accessdrift.streams.census import Census
from accessdrift.streams.inbox import Partitioner

STREAMS = ("identity.status", "device.posture", "entitlement.change", "access.exception")
TARGET_S = 60.0


async def _write_changelog(
    bootstrap: str, topic: str, inputs: list[str], identities: int
) -> tuple[int, int]:
    """The changelog of `identities` states, and the (empty) input topics the worker reads;
    returns (obligations pending, bytes written)."""
    await create_topics(bootstrap, [topic, *inputs])
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=50, max_batch_size=1 << 20, acks="all"
    )
    await producer.start()
    census, partition_of, written = Census(), Partitioner(PARTITIONS), 0
    last: dict[int, tuple[bytes, bytes]] = {}
    started = time.monotonic()
    try:
        for number, (state, key, value, open_findings) in enumerate(
            identity_states(identities, time.time_ns() // 1000)
        ):
            census.load(state, open_findings)
            written += len(value)
            partition = partition_of(key)
            last[partition] = (key, value)
            await producer.send(topic, value, key=key, partition=partition)
            if number % STATE_BATCH == STATE_BATCH - 1:
                await producer.flush()
                rate = (number + 1) / (time.monotonic() - started)
                print(
                    f"\rbench: {number + 1:,} of {identities:,} states written ({rate:,.0f}/s)",
                    end="",
                    file=sys.stderr,
                )
        await producer.flush()
        # The embedded broker answers ListOffsets with the last batch's base offset + 1, and
        # faust restores up to that: the rest of each partition's last batch would be skipped.
        # Writing each partition's last record again, alone in its batch, makes the end exact.
        for partition, (key, value) in sorted(last.items()):
            await (await producer.send(topic, value, key=key, partition=partition))
        print(file=sys.stderr)
    finally:
        await producer.stop()
    return census.live_total - len(census.open), written


def _ready(text: str, pending: int) -> bool:
    clocks = re.findall(r"^accessdrift_clock_lag_seconds\{partition=", text, re.M)
    found = re.search(r"^accessdrift_obligations_pending (\S+)$", text, re.M)
    return len(clocks) == PARTITIONS and found is not None and float(found[1]) == pending


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--identities", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    app_id = f"recovery-{uuid.uuid4().hex[:6]}"
    results: dict[str, Any] = {"identities": args.identities, "target_s": TARGET_S}
    with tempfile.TemporaryDirectory() as scratch, EmbeddedBroker() as broker:
        home = Path(scratch)
        print(f"bench: writing {args.identities:,} identities' changelog ...", file=sys.stderr)
        started = time.monotonic()
        topics = {stream: f"{app_id}.{stream}" for stream in (*STREAMS, "findings", "deadletter")}
        pending, written = asyncio.run(
            _write_changelog(
                broker.bootstrap,
                f"{app_id}-identities-changelog",
                [topics[stream] for stream in STREAMS],
                args.identities,
            )
        )
        results["write_s"] = time.monotonic() - started
        results["changelog_mib"] = written / 2**20
        results["pending"] = pending
        (home / "policy.toml").write_text("")
        port = free_port()
        env = worker_env(
            broker.bootstrap, app_id, home / "policy.toml", home / "data", port, topics
        )
        print("bench: starting a fresh worker ...", file=sys.stderr)
        log = home / "worker.log"
        started = time.monotonic()
        worker = start_worker(env, home, log)
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            faust_ready_s = None
            while True:
                elapsed_s = time.monotonic() - started
                if faust_ready_s is None and b"Worker]: Ready" in log.read_bytes():
                    faust_ready_s = elapsed_s
                if _ready(metrics_text(url), pending):
                    break
                if worker.poll() is not None:
                    raise RuntimeError(f"worker exited:\n{log.read_text()[-3000:]}")
                if elapsed_s > 1800:
                    raise RuntimeError("the worker was not ready in 30 minutes")
                print(f"\rbench: {elapsed_s:5.0f} s, not ready yet", end="", file=sys.stderr)
                time.sleep(0.5)
            results["ready_s"] = time.monotonic() - started
            results["faust_ready_s"] = faust_ready_s
            print(file=sys.stderr)
        finally:
            stop_process_group(worker, timeout_s=30)
    results["identities_per_s"] = args.identities / results["ready_s"]
    results["vs_target"] = TARGET_S / results["ready_s"]
    print(
        f"{'identities':>12}{'changelog MiB':>15}{'faust ready s':>15}{'ready s':>10}"
        f"{'target s':>10}\n{args.identities:>12,}{results['changelog_mib']:>15,.0f}"
        f"{results['faust_ready_s'] or 0:>15.1f}{results['ready_s']:>10.1f}{TARGET_S:>10.0f}",
        file=sys.stderr,
    )
    emit(results, args.json)


if __name__ == "__main__":
    main()
