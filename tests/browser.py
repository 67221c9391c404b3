"""A real headless browser for the tests: Debian's chromium driven through Debian's
chromium-driver by Selenium (no browser download; `make test` installs both packages)."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from accessdrift.streams.broker import free_port
from tests.servers import need

#: Where `make screenshots` asks the browser tests to leave their pictures (the README's).
SCREENSHOTS_ENV = "ACCESSDRIFT_SCREENSHOTS"


@contextlib.contextmanager
def chromium(home: Path, width: int = 1280, height: int = 900) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = need("chromium")
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the tests run as root in CI
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        f"--window-size={width},{height}",
        f"--user-data-dir={home / 'chromium-profile'}",
    ):
        options.add_argument(argument)
    service = Service(
        executable_path=need("chromedriver"),
        port=free_port(),
        log_output=str(home / "chromedriver.log"),
    )
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


def wait_until(
    driver: webdriver.Chrome, condition: Callable[[Any], Any], timeout_s: float = 30
) -> Any:
    return WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(condition)


def keep_screenshot(driver: webdriver.Chrome, home: Path, name: str) -> Path:
    """Save a PNG of the whole page (beyond the window, through the DevTools protocol); also
    into the folder `ACCESSDRIFT_SCREENSHOTS` names, if set."""
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
    )
    path = home / name
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.read_bytes().startswith(b"\x89PNG"), "the browser took no screenshot"
    folder = os.environ.get(SCREENSHOTS_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(folder) / name)
    return path
