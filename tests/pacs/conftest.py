"""PACS fixtures: a throwaway Orthanc with the DICOMweb plugin on free localhost ports.

`orthanc` (session scope) starts /usr/sbin/Orthanc through `core.pacs.testing` (storage in a temp
folder, HTTP basic authentication on, so the credentials path is exercised), waits until /system
answers and stops it at the end. Where Orthanc or its DICOMweb plugin is absent, or it does not
start within START_TIMEOUT_S, the tests that use it are skipped with the reason (they fail instead
when NEUROGRADE_REQUIRE_ORTHANC=1, so CI cannot pass by silently skipping them). Tests share the
server: give each its own UIDs and patient IDs (dicom_factory's `seed`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from core.pacs.testing import Orthanc, start_orthanc, stop_orthanc
from tests.pages.test_scan_page import active_models  # noqa: F401 - tiny active models (page tests)
from tests.test_browser_e2e import app_home, app_url  # noqa: F401 - the app in a subprocess (browser tests)

__all__ = ["Orthanc", "orthanc"]


@pytest.fixture(scope="session")
def orthanc():
    """A running Orthanc with DICOMweb (see the module doc), or the test is skipped."""
    root = Path(tempfile.mkdtemp(prefix="ng-orthanc-"))
    server, proc_or_reason = start_orthanc(root)
    if server is None:
        shutil.rmtree(root, ignore_errors=True)
        if os.environ.get("NEUROGRADE_REQUIRE_ORTHANC"):
            pytest.fail(f"Orthanc unavailable but NEUROGRADE_REQUIRE_ORTHANC is set: {proc_or_reason}")
        pytest.skip(f"Orthanc unavailable: {proc_or_reason}")
    try:
        yield server
    finally:
        stop_orthanc(proc_or_reason)
        shutil.rmtree(root, ignore_errors=True)
