"""The browser of the dashboard tests (not a test module): Debian's chromium,
headless, driven by selenium through /usr/bin/chromedriver (selenium downloads
nothing), and the ``UI`` the tests drive it with: pages, elements, flash messages,
full-page screenshots."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import urllib.parse
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from server_support import Server
from worker_support import wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img"
# Without the networking flags chromium hangs on a closed network (it phones home).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1360,900",
]
# The screenshots docs/img/dashboard-NAME.png (README, docs/dashboard.md).
README_SHOTS = {"overview", "jobs", "job", "queues", "workers", "cron", "flow"}


def start_browser(profile: Path) -> WebDriver:
    """Headless chromium with a new empty profile in ``profile``; its console kept."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))


class UI:
    """The browser on the dashboard: open pages, find elements, take screenshots."""

    def __init__(self, driver: WebDriver, server: Server, screenshots: Path) -> None:
        self.driver = driver
        self.server = server
        self.screenshots = screenshots

    def open(self, path: str, main: str | None = None) -> None:
        separator = "&" if "?" in path else "?"
        self.driver.get(self.server.url + path + separator + "refresh=0")
        if main is not None:
            self.main(main)

    def main(self, main: str) -> None:
        found = self.driver.find_elements(By.CSS_SELECTOR, f"main#{main}")
        assert found, f"no main#{main} at {self.driver.current_url}:\n{self.source()}"

    def source(self) -> str:
        return self.driver.page_source[:3000]

    def css(self, selector: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def one(self, selector: str) -> WebElement:
        found = self.css(selector)
        assert len(found) == 1, f"{len(found)} x {selector} at {self.driver.current_url}"
        return found[0]

    def path(self) -> tuple[str, dict[str, str]]:
        url = urllib.parse.urlsplit(self.driver.current_url)
        return url.path, dict(urllib.parse.parse_qsl(url.query))

    def job_ids(self) -> list[int]:
        return [int(e.get_attribute("data-job-id") or 0) for e in self.css("tr.job-row")]

    def click(self, element: WebElement) -> None:
        """Click, accepting the confirm() dialog our script may show."""
        element.click()
        with contextlib.suppress(NoAlertPresentException):
            self.driver.switch_to.alert.accept()

    def flash(self) -> str:
        wait_until(lambda: self.css("#flash"), 15, f"a flash message at {self.driver.current_url}")
        return self.one("#flash").text

    def shoot(self, name: str) -> Path:
        """Full-page screenshot ``name``.png (and docs/img/dashboard-``name``.png when
        ERRANDS_UPDATE_SCREENSHOTS=1)."""
        # The whole page down to the end of <main> (at most 2400 px), not only the
        # window: DevTools' capture beyond the viewport.
        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        bottom = self.driver.execute_script(
            "return document.querySelector('main').getBoundingClientRect().bottom + window.scrollY"
        )
        height = min(max(float(bottom) + 24, 300), 2400)
        clip = {
            "x": 0,
            "y": 0,
            "width": metrics["cssContentSize"]["width"],
            "height": height,
            "scale": 1,
        }
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": clip},
        )
        path = self.screenshots / f"{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        if os.environ.get("ERRANDS_UPDATE_SCREENSHOTS") == "1" and name in README_SHOTS:
            DOCS_IMG.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_IMG / f"dashboard-{name}.png")
        return path

    def console_errors(self) -> list[str]:
        return [
            entry["message"]
            for entry in self.driver.get_log("browser")
            # The browser asks for /favicon.ico by itself; the pages link none.
            if entry.get("level") == "SEVERE" and "/favicon.ico" not in entry["message"]
        ]
