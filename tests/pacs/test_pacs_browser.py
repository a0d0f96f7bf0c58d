"""The issue's "done means", in a real Chromium against a live Orthanc: sign in as a clinician, open a
three-sequence study from the PACS, see its sequences named and aligned, get the verdict, send the
results back, and find the SR and the key images in Orthanc's own view of the study (its REST API)."""

from __future__ import annotations

import pytest

from tests.pacs.test_pacs_page import three_sequence_study
from tests.test_browser_e2e import CHROMIUM, CHROMIUM_ARGS, CLINICIAN, sign_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)"),
]


@pytest.fixture
def pacs_env(orthanc, monkeypatch):
    """The app (started after this fixture) talks to the test Orthanc."""
    monkeypatch.setenv("NEUROGRADE_PACS_URL", orthanc.url)
    monkeypatch.setenv("NEUROGRADE_PACS_USER", orthanc.auth[0])
    monkeypatch.setenv("NEUROGRADE_PACS_PASSWORD", orthanc.auth[1])
    return orthanc


def test_open_from_pacs_verdict_and_results_back_in_the_browser(pacs_env, app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    study = three_sequence_study(tmp_path, "BROWSER-3SEQ")
    pacs_env.upload(study)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            sign_in(page, app_url, CLINICIAN)
            page.get_by_text("Open from PACS", exact=True).click()
            page.get_by_label("Patient ID").fill("BROWSER-3SEQ")
            page.get_by_role("button", name="Search the PACS").click()
            expect(page.get_by_text("1 studies found")).to_be_visible(timeout=60_000)
            page.locator(".st-key-pacs_open button").click()
            expect(page.get_by_text("Verdict", exact=True)).to_be_visible(timeout=120_000)
            sequences = page.get_by_text("Sequences of this study (3), aligned on one grid")
            expect(sequences).to_be_visible()
            sequences.click()
            expect(page.get_by_text("recognised from", exact=False).first).to_be_visible()
            push = page.get_by_role("button", name="Send results to the PACS")
            expect(push).to_be_visible(timeout=120_000)
            push.click()
            expect(page.get_by_text("Sent to the PACS", exact=False)).to_be_visible(timeout=120_000)
            assert page.locator("[data-testid=stException]").count() == 0
            for secret in ("Zebrowski", "PHIID77321"):
                assert secret not in page.content()
        finally:
            browser.close()
    series = pacs_env.get(f"/studies/{pacs_env.find_study(study[0].StudyInstanceUID)}/series")
    assert sorted(s["MainDicomTags"]["Modality"] for s in series) == ["MR", "MR", "MR", "MR", "OT", "SR"]
