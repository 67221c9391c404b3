"""Real servers from Debian's packages, started by a test on loopback and always stopped."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def need(program: str) -> str:
    """The program's path; `make test` installs the Debian packages the tests need."""
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"{program} is not installed: run `make test`, which installs it")
    return path


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    return check


def port_open(port: int) -> Callable[[], bool]:
    def check() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    return check


@contextlib.contextmanager
def running(
    command: list[str],
    ready: Callable[[], bool],
    log: Path,
    timeout_s: float = 30,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` (output to `log`) until the block ends; wait until `ready()` first."""
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"{command[0]} did not start:\n{log.read_text(errors='replace')[-3000:]}"
                )
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
