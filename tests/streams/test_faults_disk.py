"""The RocksDB store's disk filling up under a real worker: a clear error and a clean stop,
never a silent loss. The data directory is a small tmpfs the test mounts (root only).

faust's supervisor would restart a crashed agent after its stream acknowledged the event in
hand, losing it; the worker instead stops without committing, and discards its local copy of
the tables, which can be behind what it recorded as applied (streams/durable.py). After the
disk is given room, a restarted worker agrees with the simulator's truth.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from accessdrift.streams.broker import EmbeddedBroker
from accessdrift.streams.durable import EXIT_STORE_FAILED
from tests.faults import Rig, organisation, soak
from tests.workers import HEAVY

pytestmark = HEAVY


def _tmpfs(data: Path, options: str) -> Iterator[Path]:
    """A tmpfs at `data` mounted with `options`, unmounted afterwards."""
    data.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(data)],
        check=False,
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace')}")
    try:
        yield data
    finally:
        subprocess.run(["umount", "--lazy", str(data)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs at tmp_path/data."""
    yield from _tmpfs(tmp_path / "data", "size=3m")


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    """A read-only tmpfs at tmp_path/data (root writes through file permissions, not this)."""
    yield from _tmpfs(tmp_path / "data", "ro,size=1m")


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_a_read_only_data_directory_stops_the_worker_at_start_with_a_clear_error(
    broker: EmbeddedBroker, tmp_path: Path, read_only_disk: Path, store: str
) -> None:
    rig = Rig(broker, tmp_path, extra_env={"ACCESSDRIFT_STORE": store})
    try:
        worker = rig.start(wait=False)
        assert worker.process.wait(60) == EXIT_STORE_FAILED
        log = worker.log.read_text(errors="replace")
        assert f"the data directory {read_only_disk} cannot be written" in log
        assert "Read-only file system" in log
        assert "--data-dir (ACCESSDRIFT_DATA_DIR)" in log
        assert "Traceback" not in log
    finally:
        rig.stop_all()


def test_a_full_disk_stops_the_worker_with_a_clear_error_and_loses_nothing(
    broker: EmbeddedBroker, tmp_path: Path, small_disk: Path
) -> None:
    org = organisation(int(soak(300, 1500)), 31)
    rig = Rig(broker, tmp_path, extra_env={"ACCESSDRIFT_STORE": "rocksdb"})
    try:
        worker = rig.start()
        rig.produce(org.events)
        status = worker.process.wait(180)
        log = worker.log.read_text(errors="replace")
        assert status == EXIT_STORE_FAILED, log[-3000:]
        assert f"the table store under {small_disk} cannot be written" in log
        assert "No space left on device" in log
        assert "Free space on that disk" in log
        assert "Restarting dead" not in log, "faust's supervisor never restarts past the failure"
        # The local copy may be behind its changelog after the failed put (streams/durable.py).
        assert "the local copy of the tables is discarded" in log
        assert not list(small_disk.rglob("tables/*.db")), "rebuilt from the changelog"

        subprocess.run(["mount", "-o", "remount,size=512m", str(small_disk)], check=True)
        rig.start()
        rig.produce([org.clock_event()])
        rig.consumed()
        records = rig.records(org.expected_records, 240)
        verdict = rig.verdict(org, records)
        print(f"disk full: {verdict.describe()}")
        assert verdict.agreement.agrees, rig.explain(org, verdict.agreement)
        assert verdict.repeats_identical
        assert rig.misplaced() == [], "every table write is on its key's changelog partition"
    finally:
        rig.stop_all()
