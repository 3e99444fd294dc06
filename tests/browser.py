"""A headless Chromium for the page tests (Debian's chromium and chromedriver, driven by selenium).

Tests that use it skip, with the reason, where one of the three is missing. Screenshots go to the folder
in TGA_SCREENSHOTS (nothing is written when it is unset), for a person to look at.
"""

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("TGA_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TGA_CHROMEDRIVER", "/usr/bin/chromedriver")


def start_browser():
    """A fresh headless Chromium, or pytest.skip saying what is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    for exe in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.exists(exe) or shutil.which(exe)):
            pytest.skip(f"{exe} not found: apt-get install chromium chromium-driver "
                        "(or set TGA_CHROMIUM / TGA_CHROMEDRIVER)")
    options = webdriver.ChromeOptions()
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,900"):
        options.add_argument(arg)
    profile = tempfile.mkdtemp(prefix="tga-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.profile_dir = profile
    return driver


def stop_browser(driver):
    driver.quit()
    shutil.rmtree(driver.profile_dir, ignore_errors=True)


def open_page(driver, path, timeout=20):
    """Load a written page from its file and wait until its script says it is ready (body[data-ready])."""
    driver.get(Path(path).resolve().as_uri())
    wait(driver, "return document.body.dataset.ready === '1'", timeout)


def wait(driver, script, timeout=10):
    """Poll a JavaScript expression until it is truthy; return its value."""
    end = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script)
        if value or time.monotonic() > end:
            assert value, f"timed out waiting for: {script}"
            return value
        time.sleep(0.05)


def errors(driver):
    """The browser console's errors since the last call."""
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def screenshot(driver, name):
    folder = os.environ.get("TGA_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))
