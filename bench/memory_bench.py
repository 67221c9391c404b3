"""Memory: resident memory per tracked identity, at 100,000 and 1,000,000 identities with ten
entitlements each (`bench/states.py`), for each place the engine's state can live:

* objects: live structs in dicts (`MemoryStore`: replay, tests);
* memory table: the msgpack form in a dict of bytes (`TableStore` over what faust's `memory://`
  table is: the worker's default);
* rocksdb: the msgpack form in RocksDB (`TableStore` over rocksdict, which faust's
  `rocksdb://` store uses): resident memory should stay flat as identities grow.

Each (store, size) runs in its own process, through the processing loop the worker uses; the
figure is resident memory after building the identities minus before, over the identities.
The anchor is the encoded state itself (bytes per identity in the table). Prints a table on
standard error and one JSON object on standard output (`--json FILE`).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import emit
from rocksdict import Rdict
from states import STATE_BATCH, messages_of

from accessdrift.models.policy import Policy
from accessdrift.streams.engine import Engine
from accessdrift.streams.processor import Processor
from accessdrift.streams.store import MemoryDevices, MemoryStore, TableStore

STORES = ("objects", "memory table", "rocksdb")
TARGET_BYTES = 2048
FLUSH_EVERY = 1000


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(store_name: str, identities: int, scratch: Path) -> dict[str, Any]:
    """Build `identities` identities in a store of this kind; what it cost in memory."""
    table: Any = None
    if store_name == "objects":
        store: MemoryStore | TableStore = MemoryStore()
    else:
        table = Rdict(str(scratch / "rocksdb")) if store_name == "rocksdb" else {}
        store = TableStore(table)
    processor = Processor(Engine(Policy()), store, MemoryDevices())
    start_us = time.time_ns() // 1000
    gc.collect()
    before = _resident_bytes()
    started = time.perf_counter()
    for number in range(identities):
        for message in messages_of(number, start_us):
            processor.apply(message, message.occurred_at_us)
        # The worker flushes once per inbox batch: about this many identities at most.
        if number % FLUSH_EVERY == FLUSH_EVERY - 1 and isinstance(store, TableStore):
            store.flush()
        if number % STATE_BATCH == STATE_BATCH - 1:
            print(
                f"\rbench: {store_name}: {number + 1:,} of {identities:,} identities",
                end="",
                file=sys.stderr,
            )
    if isinstance(store, TableStore):
        store.flush()
    print(file=sys.stderr)
    seconds = time.perf_counter() - started
    gc.collect()
    resident = _resident_bytes() - before
    result: dict[str, Any] = {
        "store": store_name,
        "identities": identities,
        "bytes_per_identity": resident / identities,
        "seconds": seconds,
    }
    if table is not None:
        total = sum(len(value) for _, value in table.items())
        result["encoded_bytes_per_identity"] = total / identities
    if store_name == "rocksdb":
        disk = sum(f.stat().st_size for f in (scratch / "rocksdb").iterdir())
        result["disk_bytes_per_identity"] = disk / identities
        table.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--phase", nargs=2, metavar=("STORE", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        with tempfile.TemporaryDirectory() as scratch:
            print(json.dumps(measure(args.phase[0], int(args.phase[1]), Path(scratch))))
        return
    results = []
    for size in args.sizes:
        for store_name in STORES:
            output = subprocess.run(
                [sys.executable, __file__, "--phase", store_name, str(size)],
                check=True, stdout=subprocess.PIPE, text=True,
            ).stdout  # fmt: skip
            results.append(json.loads(output))
    print(
        f"{'store':<14}{'identities':>12}{'resident B/identity':>21}{'encoded B':>11}"
        f"{'disk B':>9}{'vs 2 KB':>9}",
        file=sys.stderr,
    )
    for row in results:
        print(
            f"{row['store']:<14}{row['identities']:>12,}{row['bytes_per_identity']:>21,.0f}"
            f"{row.get('encoded_bytes_per_identity', 0):>11,.0f}"
            f"{row.get('disk_bytes_per_identity', 0):>9,.0f}"
            f"{TARGET_BYTES / max(1.0, row['bytes_per_identity']):>9.2f}",
            file=sys.stderr,
        )
    emit({"target_bytes": TARGET_BYTES, "results": results}, args.json)


if __name__ == "__main__":
    main()
