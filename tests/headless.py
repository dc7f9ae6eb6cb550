"""Headless Chromium for the tests (Debian's ``chromium`` + ``chromium-driver``), driven by Selenium with explicit
paths, so that Selenium Manager never looks for (or downloads) a browser or a driver.

Every host name resolves to nothing (``--host-resolver-rules``; background networking off): a page that tried to
fetch something from outside would fail to, and the DevTools log below shows the attempt.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

CHROMIUM = os.environ.get("FUSEKIT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FUSEKIT_CHROMEDRIVER", "/usr/bin/chromedriver")


def missing() -> str | None:
    """Why no browser test can run here (None when it can)."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (Path(path).is_file() or shutil.which(path)):
            return (f"{path} not found: install Debian's chromium and chromium-driver (apt-get install chromium "
                    f"chromium-driver), or point FUSEKIT_CHROMIUM / FUSEKIT_CHROMEDRIVER at them ({package})")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install '.[test]'"
    return None


@contextlib.contextmanager
def chromium(width: int = 1000, height: int = 800, loopback: bool = False):
    """A headless Chromium WebDriver, offline, with the DevTools performance log on. ``loopback``: 127.0.0.1 is
    still reached (a local server's page, such as `fusekit review`'s); every host name still resolves to nothing."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}",
                "--host-resolver-rules=MAP * ~NOTFOUND" + (", EXCLUDE 127.0.0.1" if loopback else ""),
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--no-first-run", "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def requests_made(driver) -> list[str]:
    """Every URL the page asked for since the last call, from the DevTools performance log (Network events)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def full_page_png(driver, path: Path, width: int = 1000, max_height: int = 1600) -> Path:
    """A screenshot of the top of the page (at most ``max_height`` px), written to ``path``."""
    height = min(max_height, int(driver.execute_script("return document.documentElement.scrollHeight")))
    driver.set_window_size(width, height)
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    return path
