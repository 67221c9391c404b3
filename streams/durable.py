"""Nothing committed past a write that did not land: a producer flush that means
"acknowledged by Kafka", and a stop that leaves a failed step's input unacknowledged.

Table writes go through faust's `ProducerBuffer` (a `__setitem__` cannot await the send). Its
`flush()` stops waiting as soon as 0.1 s pass without a record leaving the queue
(`ProducerBuffer.flush_atmost` in faust-streaming 0.11 to 0.15), so it can return with table
writes still queued. faust's consumer flushes, then commits the input offsets; the worker
flushes, then publishes what the outbox holds. Under load (a slow broker, a busy machine, one
record per batch) a kill -9 after such a flush lost a table write whose input offset was
already committed: the rebalance fault test missed a mover finding that way. With this in
place, a flush returns only once every record handed to the buffer before it has been
acknowledged, or raises the error of one that failed, so nothing is committed past it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Final, NoReturn

from accessdrift.models.errors import BrokerError
from accessdrift.models.text import printable

log = logging.getLogger(__name__)


class Acknowledged:
    """Tracks every record put into `buffer` until Kafka acknowledges it, and makes the
    buffer's `flush` wait for all of them. `buffer` is faust's `ProducerBuffer` (typed `Any`:
    its `put` and `flush` are replaced on the instance); what goes in by `put` are faust's
    `FutureMessage`s, futures that resolve when Kafka acknowledges the record."""

    def __init__(self, buffer: Any) -> None:
        self._pending: set[asyncio.Future[Any]] = set()
        self._put = buffer.put
        buffer.put = self._track
        buffer.flush = self.flush

    def _track(self, future: asyncio.Future[Any]) -> None:
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        self._put(future)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        """Return once every record put so far is acknowledged; raise if one failed."""
        while self._pending:
            done, _ = await asyncio.wait(set(self._pending))
            for future in done:
                error = None if future.cancelled() else future.exception()
                if error is not None:
                    raise BrokerError(
                        "a table or outbox write was not acknowledged by Kafka "
                        f"({type(error).__name__}); nothing is committed past it: check the "
                        "broker, then restart the worker",
                        retryable=True,
                    ) from error


#: Exit statuses (sysexits.h): the table store could not be written; anything else.
EXIT_STORE_FAILED: Final = 74
EXIT_STEP_FAILED: Final = 70
#: How long the stop waits for table writes already queued to reach the changelog.
_LAST_FLUSH_S: Final = 10.0


def data_dir_problem(data_dir: Path) -> str | None:
    """Why the worker could not keep its tables under `data_dir` (created if missing), or None:
    checked before the worker starts, so that a read-only or missing disk is a clear error and a
    clean stop, not a failure deep in faust's table recovery."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / f".accessdrift-write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        return (
            f"the data directory {printable(str(data_dir))} cannot be written "
            f"({printable(error.strerror or type(error).__name__)}): make it writable by this "
            "user, or choose another with --data-dir (ACCESSDRIFT_DATA_DIR)"
        )
    return None


def store_failure(error: BaseException) -> bool:
    """Whether `error` is the table store failing to write: the disk full, the data directory
    read-only or gone (rocksdict raises a plain Exception whose text starts "IO error")."""
    return isinstance(error, OSError) or str(error).startswith("IO error")


async def stop_unacknowledged(
    error: BaseException, data_dir: Path, table_dir: Path, buffer_flush: Any
) -> NoReturn:
    """Stop the worker after a stream step failed, without acknowledging the step's input.

    faust's supervisor would restart the agent, and its stream acknowledges the event that was
    being processed on the way out (the `finally` of `Stream._c_aiter`): its offset is then
    committed and the event is lost without a trace. So the step's failure ends the process
    instead, after a last bounded flush of what is queued for the changelog: the input is
    delivered again after the restart, and the engine recognises what it had already applied.

    After the table store failed to write, its local copy (`table_dir`) is discarded: faust
    sends a table write to the changelog before it puts it in RocksDB, and records the
    changelog offset as applied locally once Kafka acknowledges it (`_on_changelog_sent`),
    whether or not the put succeeded. On a full disk a small offset record can fit where the
    state before it did not, and the next start would then skip the changelog record whose put
    failed: the identity's state would be silently old (the disk fault test lost an
    owner_departed finding that way). The changelog is the truth; the next start rebuilds the
    local copy from it.
    """
    if store_failure(error):
        log.critical(
            "the table store under %s cannot be written (%s): stopping without committing the "
            "events in flight, which are read again after a restart; the local copy of the "
            "tables is discarded and rebuilt from the changelog then. Free space on that disk "
            "or make the directory writable by this user, then restart the worker",
            printable(str(data_dir)),
            printable(str(error), 300),
        )
        status = EXIT_STORE_FAILED
    else:
        log.critical(
            "a stream step failed (%s): stopping without committing the events in flight, which "
            "are read again after a restart",
            type(error).__name__,
            exc_info=error,
        )
        status = EXIT_STEP_FAILED
    with contextlib.suppress(Exception):
        await asyncio.wait_for(buffer_flush(), _LAST_FLUSH_S)
    if status == EXIT_STORE_FAILED:
        # Unlinking frees space on a full disk; a read-only directory keeps its copy, which no
        # write reached, so it is consistent.
        shutil.rmtree(table_dir, ignore_errors=True)
    logging.shutdown()
    os._exit(status)
