"""The app's pages in a real headless Chromium (Playwright on Debian's /usr/bin/chromium; Playwright's
own browser download is not used). Each timing runs from the user's action (a file handed to the
uploader, a click on "Open") until the verdict card's headline is on screen."""

from __future__ import annotations

import contextlib
import importlib.util
import re
import time
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
VERDICT = "[data-testid=stMarkdownContainer] h2"  # the verdict card's headline (pages/verdict_panel.py)
RUNNING = "[data-testid=stStatusWidgetRunningIcon]"  # Streamlit's "Running..." while a script runs
MODEL_TIME = re.compile(r"([\d.]+) s for (\d+) slices?")  # the verdict's technical details caption


def missing() -> str | None:
    """Why the browser measurements cannot run here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed (a dev dependency: pip install -r requirements-dev.txt)"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


@contextlib.contextmanager
def browser_page(timeout_s: float, screenshot: Path | None = None):
    """A new page in a headless Debian chromium; every wait on it gives up after `timeout_s`.
    When the block fails, the page is saved to `screenshot` (if given)."""
    # imported here: Playwright is a dev dependency, absent from the app's image
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=timeout_s * 1e3)  # expect() keeps its own timeout (5 s by default)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(timeout_s * 1e3)
            try:
                yield page
            except Exception:
                if screenshot:
                    page.screenshot(path=str(screenshot), full_page=True)
                raise
        finally:
            browser.close()


class ScanPage:
    """The scan page of a running app, driven like a user would."""

    def __init__(self, page):
        from playwright.sync_api import TimeoutError as PlaywrightTimeout  # see browser_page
        from playwright.sync_api import expect  # optional: playwright (dev)

        self.page, self.expect, self.timeout_error = page, expect, PlaywrightTimeout
        self.verdict = page.locator(VERDICT)
        self.ready_at: float | None = None  # time.monotonic() when the page was first ready

    def open(self, url: str) -> None:
        """Load the app and wait until the uploader is on screen."""
        self.page.goto(url, wait_until="domcontentloaded")
        self.expect(self.page.get_by_test_id("stFileUploaderDropzone")).to_be_visible()
        self.ready_at = time.monotonic()

    def upload(self, path: Path) -> float:
        """Seconds from handing `path` to the uploader until the verdict is visible."""
        t0 = time.monotonic()
        self.page.locator("input[type=file]").set_input_files(str(path))
        self.expect(self.verdict.first).to_be_visible()
        return time.monotonic() - t0

    def remove(self, path: Path) -> None:
        """Take the upload away (its verdict goes), so the next one's verdict cannot be the old one."""
        self.page.get_by_role("button", name=f"Remove {path.name}").click()
        self.expect(self.verdict).to_have_count(0)

    def headline(self) -> str:
        return (self.verdict.first.text_content() or "").strip()

    def model_seconds(self) -> float | None:
        """The models' own time for the verdict on screen, from its (collapsed) technical details,
        which are drawn just after the verdict card (None when they do not come within 10 s)."""
        caption = self.page.get_by_test_id("stCaptionContainer").filter(has_text=MODEL_TIME).first
        try:
            caption.wait_for(state="attached", timeout=10_000)
        except self.timeout_error:
            return None
        found = MODEL_TIME.search(caption.text_content() or "")
        return float(found.group(1)) if found else None

    def settle(self, quiet_s: float = 2.0) -> None:
        """Wait until no script has run for `quiet_s` (the heat maps and the report come after the
        verdict)."""
        running = self.page.locator(RUNNING)
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < quiet_s:
            if running.count():
                self.expect(running).to_have_count(0)
                quiet_since = time.monotonic()
            self.page.wait_for_timeout(200)

    def choose_pacs(self) -> None:
        self.page.get_by_text("Open from PACS", exact=True).click()  # the source segmented control
        self.expect(self.page.get_by_role("button", name="Search the PACS")).to_be_visible()

    def open_from_pacs(self, patient_id: str) -> float:
        """Search the PACS for `patient_id`, then the seconds from clicking "Open" on the study found
        until its verdict is visible."""
        self.page.get_by_label("Patient ID").fill(patient_id)
        self.page.get_by_role("button", name="Search the PACS").click()
        self.expect(self.verdict).to_have_count(0)  # a new search closes the open study
        button = self.page.locator("[class*=st-key-pacs_open] button")
        self.expect(button).to_be_visible()
        self.settle(0.5)
        t0 = time.monotonic()
        button.click()
        self.expect(self.verdict.first).to_be_visible()
        return time.monotonic() - t0
