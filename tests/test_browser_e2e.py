"""End to end in a real headless Chromium: `streamlit run app.py`, upload a NIfTI, see the viewer;
upload the committed TCIA volume, see the verdict, a heat map, and follow a click on the slice strip.

Needs the Debian chromium package (/usr/bin/chromium); Playwright's own browser download is not
used. Set NEUROGRADE_E2E_SCREENSHOT=/path.png to keep a screenshot of the final page.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from core.perf.browser import CHROMIUM, CHROMIUM_ARGS  # one set of Chromium flags for tests and bench-ui

REPO = Path(__file__).resolve().parent.parent

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


FIXTURES = REPO / "tests" / "fixtures"
TASK_CLASSES = {
    "presence": (["no_tumor", "tumor"], None),
    "tumor_type": (["glioma", "meningioma", "pituitary"], None),
    "grade": (["G2", "G3"], ["t1pre", "flair", "t1post"]),
}


def seed_missing_models(home: Path, monkeypatch) -> dict[str, str]:
    """The active model of each task: the shipped one when model_zoo has it, else a tiny random
    vgg19_slim (32 px) saved and made active in `home` (so the test runs before models ship)."""
    import torch

    from core.zoo import active_version, save_checkpoint, set_active
    from model_zoo import create

    monkeypatch.setenv("NEUROGRADE_HOME", str(home))
    active = {}
    for task, (classes, sequences) in TASK_CLASSES.items():
        version = active_version(task)
        if version is None:
            torch.manual_seed(len(classes))
            save_checkpoint(
                create("vgg19_slim", len(classes)),
                {"architecture": "vgg19_slim", "classes": classes, "input": {"size": 32, "sequences": sequences}},
                task,
                "e2e-tiny",
            )
            set_active(task, "e2e-tiny")
            version = "e2e-tiny"
        active[task] = version
    return active


ADMIN, CLINICIAN, PASSWORD = "e2e-admin", "e2e-clinician", "e2e password 123"


@pytest.fixture
def app_home(tmp_path) -> Path:
    """The app's home, with an administrator and a clinician account (sign-in is on)."""
    from core import auth
    from core.store import Store
    from core.store.db import dispose_engines

    home = tmp_path / "home"
    repo = Store.open(f"sqlite:///{home / 'neurograde.db'}")
    auth.add_user(repo, ADMIN, "admin", PASSWORD, "e2e")
    auth.add_user(repo, CLINICIAN, "clinician", PASSWORD, "e2e")
    dispose_engines()
    return home


def sign_in(page, url: str, name: str = ADMIN, password: str = PASSWORD, not_found: bool = False) -> None:
    """Open `url` (a new session) and sign in; not_found: the URL names a page the signed-out
    navigation lacks, so Streamlit first says "Page not found" (closed here)."""
    from playwright.sync_api import expect

    page.goto(url, wait_until="domcontentloaded")
    expect(page.get_by_label("User name")).to_be_visible(timeout=60_000)
    if not_found:
        dialog = page.get_by_role("dialog", name="Page not found")
        expect(dialog).to_be_visible(timeout=30_000)
        dialog.get_by_role("button", name="Close").click()
        expect(dialog).to_have_count(0)
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(f"Signed in as {name}")).to_be_visible(timeout=60_000)


@pytest.fixture
def app_url(tmp_path, app_home):
    port = _free_port()
    env = dict(os.environ, NEUROGRADE_HOME=str(app_home), NEUROGRADE_DEVICE="cpu", PYTHONUNBUFFERED="1")
    log = tmp_path / "streamlit.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.headless",
                "true",
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--browser.gatherUsageStats",
                "false",
                "--server.fileWatcherType",
                "none",
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
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

    data = np.zeros((20, 24, 16), np.float32)  # (x, y, z)
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
            sign_in(page, app_url)
            expect(page.get_by_text("Upload a scan")).to_be_visible(timeout=60_000)
            page.locator("input[type=file]").set_input_files(str(fixture))
            expect(page.get_by_text("Axial", exact=True)).to_be_visible(timeout=60_000)
            expect(page.get_by_text("Coronal", exact=True)).to_be_visible()
            expect(page.get_by_text("Sagittal", exact=True)).to_be_visible()
            expect(page.get_by_text("16 × 24 × 20 voxels", exact=False)).to_be_visible()
            expect(page.get_by_text("slice 9 of 16", exact=False).first).to_be_visible(timeout=30_000)
            # three planes (+ verdict figures when models exist); plotly draws asynchronously
            expect(page.locator(".js-plotly-plot").nth(2)).to_be_visible(timeout=60_000)
            expect(page.get_by_text("Verdict", exact=True)).to_be_visible()
            # orientation letters on every plane (radiological: the patient's right on the left)
            for plane, letters in (("axial", "RLAP"), ("coronal", "RLSI"), ("sagittal", "APSI")):
                texts = page.locator(f"[class*=st-key-fig_{plane}_] .annotation-text")
                expect(texts).to_have_text(list(letters))
            expect(page.get_by_text("the patient's right is on the viewer's left", exact=False)).to_be_visible()
            # a click in the axial plane (24 rows x 20 columns) moves the coronal and sagittal planes
            # to the voxel under it: row 10 -> y 13, column 3 -> x 16 (the image's left is the
            # patient's right, x grows towards it)
            axial = page.locator("[class*=st-key-fig_axial_] .nsewdrag").first
            axial.scroll_into_view_if_needed()
            box = axial.bounding_box()
            page.mouse.click(box["x"] + box["width"] * 3.5 / 20, box["y"] + box["height"] * 10.5 / 24)
            sagittal = page.locator("[class*=st-key-pos_sagittal_] [data-testid=stSlider]").first
            expect(sagittal).to_have_text(re.compile(r"Sagittal slice\s*17\s*1\s*20"), timeout=30_000)
            coronal = page.locator("[class*=st-key-pos_coronal_] [data-testid=stSlider]").first
            expect(coronal).to_have_text(re.compile(r"Coronal slice\s*14\s*1\s*24"))
            # the sidebar survives the rerun the upload caused
            expect(page.get_by_text("Device: ", exact=False)).to_be_visible()
            assert page.locator("[data-testid=stException]").count() == 0
            shot = os.environ.get("NEUROGRADE_E2E_SCREENSHOT")
            if shot:
                page.screenshot(path=shot, full_page=True)
        finally:
            browser.close()


@pytest.fixture
def seeded_models(app_home, monkeypatch):
    return seed_missing_models(app_home, monkeypatch)


def test_tcia_volume_gets_verdict_heat_map_and_strip_navigation(seeded_models, app_url):
    from playwright.sync_api import expect, sync_playwright

    fixture = FIXTURES / "tcia_btp_PGBM-010_post_t1post.nii.gz"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            sign_in(page, app_url, CLINICIAN)  # a clinician may scan and see the verdict
            expect(page.get_by_text("Upload a scan")).to_be_visible(timeout=60_000)
            page.locator("input[type=file]").set_input_files(str(fixture))
            # the verdict card: a verdict (its calibrated probability unless it is referred), the
            # models that made it
            card = page.locator("[data-testid=stMarkdownContainer] h2").first
            expect(card).to_have_text(
                re.compile(r"Glioma|Meningioma|Pituitary|No tumour|Tumour|Possible tumour"), timeout=120_000
            )
            if "refer" not in (card.text_content() or ""):
                expect(page.get_by_test_id("stMetricLabel").filter(has_text="Probability")).to_be_visible()
            expect(page.get_by_text(f"presence@{seeded_models['presence']}").first).to_be_visible()
            expect(page.get_by_text("Research use only — not a medical device").first).to_be_visible()
            # the heat map: on the axial slice on screen and in the key-slice gallery
            expect(page.get_by_text(re.compile(r"slice \d+ of 24 · Grad-CAM for"))).to_be_visible(timeout=60_000)
            heat = page.get_by_alt_text(re.compile("Grad-CAM heat map, key slice"))
            expect(heat.first).to_be_visible(timeout=60_000)
            assert heat.count() >= 1
            assert page.evaluate("(img) => img.naturalWidth", heat.first.element_handle()) > 0
            expect(page.get_by_role("button", name="PDF case report")).to_be_visible()
            expect(page.get_by_role("button", name="JSON export")).to_be_visible()
            # a click on the per-slice strip moves the viewer (and its axial slider) to that slice
            strip = page.locator("[class*=st-key-strip_] .js-plotly-plot").first
            strip.scroll_into_view_if_needed()
            box = strip.locator(".nsewdrag").first.bounding_box()
            page.mouse.click(box["x"] + box["width"] * (2.5 / 24), box["y"] + box["height"] * 0.5)
            expect(page.get_by_text(re.compile(r"slice 3 of 24 · Grad-CAM for"))).to_be_visible(timeout=60_000)
            slider = page.locator("[class*=st-key-pos_axial_] [data-testid=stSlider]")
            expect(slider.first).to_have_text(re.compile(r"Axial slice\s*3\s*1\s*24"))  # value, min, max
            assert page.locator("[data-testid=stException]").count() == 0
            shot = os.environ.get("NEUROGRADE_E2E_SCREENSHOT")
            if shot:
                page.screenshot(path=shot, full_page=True)
        finally:
            browser.close()


def test_roles_a_clinician_cannot_promote_train_or_label_an_admin_can(app_url):
    """Sign-in is on: nothing without it; a clinician's navigation has no Review queue, Train or
    Users, their URLs lead back to Scan, and Models shows no promote / force / roll back; the admin
    gets all of them."""
    from playwright.sync_api import expect, sync_playwright

    nav = "[data-testid=stSidebarNav]"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(app_url, wait_until="domcontentloaded")
            expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=60_000)
            assert page.get_by_text("Upload a scan").count() == 0
            page.get_by_label("User name").fill(CLINICIAN)
            page.get_by_label("Password", exact=True).fill("not the password")
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_text("Wrong user name or password")).to_be_visible(timeout=30_000)

            sign_in(page, app_url, CLINICIAN)
            expect(page.locator(nav).get_by_text("Scan", exact=True)).to_be_visible()
            expect(page.locator(nav).get_by_text("Models", exact=True)).to_be_visible()
            for hidden in ("Review queue", "Train", "Users"):
                assert page.locator(nav).get_by_text(hidden, exact=True).count() == 0, hidden
            for path in ("review", "train", "users"):  # typed URLs (a new session) fall back to Scan
                sign_in(page, app_url + path, CLINICIAN, not_found=True)
                expect(page.get_by_text("Upload a scan")).to_be_visible(timeout=60_000)
                assert page.get_by_role("button", name="Save label").count() == 0
                assert page.get_by_role("button", name="Start training").count() == 0
            page.locator(nav).get_by_text("Models", exact=True).click()
            expect(page.get_by_text("that needs admin").first).to_be_visible(timeout=60_000)
            assert page.get_by_role("button", name=re.compile("^Promote")).count() == 0
            assert page.get_by_role("button", name="Force promotion").count() == 0
            assert page.get_by_role("button", name="Roll back to the previous champion").count() == 0
            assert page.locator("[data-testid=stException]").count() == 0
            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=60_000)

            sign_in(page, app_url, ADMIN)
            for shown in ("Review queue", "Train", "Users"):
                expect(page.locator(nav).get_by_text(shown, exact=True)).to_be_visible()
            page.locator(nav).get_by_text("Models", exact=True).click()
            expect(page.get_by_role("button", name="Roll back to the previous champion")).to_be_visible(timeout=60_000)
            page.locator(nav).get_by_text("Train", exact=True).click()
            expect(page.get_by_role("button", name="Start training")).to_be_visible(timeout=60_000)
            assert page.locator("[data-testid=stException]").count() == 0
        finally:
            browser.close()


def test_markdown_and_html_in_a_card_render_as_text(app_home, app_url, monkeypatch, tmp_path):
    """A model card is a file anyone could have written: its text must never become an image, a
    link or HTML in a reviewer's browser (no request may reach the planted URLs)."""
    import torch
    from playwright.sync_api import expect, sync_playwright

    from core.zoo import save_checkpoint
    from model_zoo import create

    monkeypatch.setenv("NEUROGRADE_HOME", str(app_home))
    pixel = "http://127.0.0.1:9/pixel.png"
    payloads = [f"![tracker]({pixel})", f"<img src='{pixel}'> <b>bold</b>", "[click](javascript:alert(1))"]
    torch.manual_seed(0)
    save_checkpoint(
        create("vgg19_slim", 2),
        {
            "architecture": "vgg19_slim",
            "classes": ["no_tumor", "tumor"],
            "input": {"size": 32},
            "limitations": payloads,
            "intended_use": payloads[0],
        },
        "presence",
        "hostile-card",
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            fetched = []
            page.on("request", lambda r: fetched.append(r.url) if "pixel" in r.url else None)
            sign_in(page, app_url, ADMIN)
            page.locator("[data-testid=stSidebarNav]").get_by_text("Models", exact=True).click()
            heading = page.get_by_text("presence@hostile-card", exact=False).first

            def choose(label: str, option: str) -> None:
                box = page.get_by_test_id("stSelectbox").filter(has_text=label).first
                expect(box).to_be_visible(timeout=60_000)
                box.click()
                page.get_by_role("option", name=option, exact=True).click()

            choose("Task", "presence")
            expect(page.get_by_text("presence@", exact=False).first).to_be_visible(timeout=60_000)
            page.wait_for_timeout(1000)  # the Task rerun settles
            if not heading.is_visible():  # the newest challenger is shown by default
                choose("Version", "hostile-card")
            expect(heading).to_be_visible(timeout=60_000)
            expect(page.get_by_text(f"![tracker]({pixel})", exact=False).first).to_be_visible(timeout=30_000)
            expect(page.get_by_text("<img src=", exact=False).first).to_be_visible()
            assert page.locator("img[src*='pixel']").count() == 0 and page.locator("b", has_text="bold").count() == 0
            assert page.locator("a[href^='javascript']").count() == 0
            assert fetched == []
        finally:
            browser.close()
