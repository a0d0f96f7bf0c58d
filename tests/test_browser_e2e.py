"""End to end in a real headless Chromium: `streamlit run app.py`, upload a NIfTI, see the viewer.

Needs the Debian chromium package (/usr/bin/chromium); Playwright's own browser download is not
used. Set NEUROGRADE_E2E_SCREENSHOT=/path.png to keep a screenshot of the final page.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync",
                 "--disable-dev-shm-usage"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"streamlit not healthy after {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def app_url(tmp_path):
    port = _free_port()
    env = dict(os.environ, NEUROGRADE_HOME=str(tmp_path / "home"), NEUROGRADE_DEVICE="cpu",
               PYTHONUNBUFFERED="1")
    log = tmp_path / "streamlit.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/_stcore/health", proc, log)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def _nifti(path: Path) -> Path:
    import nibabel as nib

    data = np.zeros((20, 24, 16), np.float32)        # (x, y, z)
    data[5:15, 6:18, 4:12] = np.linspace(10, 300, 10 * 12 * 8).reshape(10, 12, 8)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), path)
    return path


def test_upload_nifti_shows_three_plane_viewer(app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    fixture = _nifti(tmp_path / "brain.nii.gz")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(app_url, wait_until="domcontentloaded")
            expect(page.get_by_text("Upload a scan")).to_be_visible(timeout=60_000)
            page.locator("input[type=file]").set_input_files(str(fixture))
            expect(page.get_by_text("Axial", exact=True)).to_be_visible(timeout=60_000)
            expect(page.get_by_text("Coronal", exact=True)).to_be_visible()
            expect(page.get_by_text("Sagittal", exact=True)).to_be_visible()
            expect(page.get_by_text("16 × 24 × 20 voxels", exact=False)).to_be_visible()
            expect(page.locator(".js-plotly-plot")).to_have_count(3, timeout=30_000)
            expect(page.get_by_text("Verdict", exact=True)).to_be_visible()
            # the sidebar survives the rerun the upload caused
            expect(page.get_by_text("Device: ", exact=False)).to_be_visible()
            assert page.locator("[data-testid=stException]").count() == 0
            shot = os.environ.get("NEUROGRADE_E2E_SCREENSHOT")
            if shot:
                page.screenshot(path=shot, full_page=True)
        finally:
            browser.close()
