"""Headless Chromium for looking at a report (tests, screenshots of docs/report.md): selenium driving Debian's
``chromium`` and ``chromium-driver``. Never used by ``run`` or ``report``; selenium is imported only here.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Where Debian's packages put the browser and its driver (``PATH`` is searched first).
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)
#: Flags: no GPU, no sandbox (CI runs as root), no network chatter of the browser itself.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--hide-scrollbars")


def find_browser() -> tuple[str, str] | None:
    """(browser, driver) executables, or None when either is missing."""
    browser = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    driver = next((shutil.which(name) for name in DRIVERS if shutil.which(name)), None)
    if browser is None and Path("/usr/lib/chromium/chromium").is_file():
        browser = "/usr/lib/chromium/chromium"
    if driver is None and Path("/usr/lib/chromium/chromedriver").is_file():
        driver = "/usr/lib/chromium/chromedriver"
    return (browser, driver) if browser and driver else None


@contextmanager
def headless_chromium(*, width: int = 1280, height: int = 1000) -> Iterator[Any]:
    """A selenium WebDriver on a headless Chromium with a fresh profile, closed (and the profile removed) on exit.

    The browser's console is recorded (``driver.get_log("browser")``).

    Raises:
        RuntimeError: No Chromium or chromedriver is installed (``apt-get install chromium chromium-driver``).
    """
    found = find_browser()
    if found is None:
        raise RuntimeError("no headless browser: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = found
    profile = tempfile.mkdtemp(prefix="report-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)

