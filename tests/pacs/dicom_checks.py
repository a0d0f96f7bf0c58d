"""Checks shared by the DICOM-out tests: dciodvfy's verdict on a file and a walk of an SR tree."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

DCIODVFY = shutil.which("dciodvfy")
# a real volume: TCIA Brain-Tumor-Progression, glioblastoma, T1 post-contrast, 256x256x24
VOLUME = Path(__file__).parents[1] / "fixtures" / "tcia_btp_PGBM-010_post_t1post.nii.gz"


def dciodvfy_errors(path) -> list[str]:
    """dciodvfy's (dicom3tools) error lines for a DICOM file; skips the test where it is absent."""
    if DCIODVFY is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    run = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (run.stdout + run.stderr).splitlines() if "Error" in line]


def sr_items(ds, value_type=None, meaning=None) -> list:
    """Content items of an SR tree, depth first, filtered by value type and concept name meaning."""
    found = []
    for item in getattr(ds, "ContentSequence", []):
        name = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else None
        if (value_type is None or item.ValueType == value_type) and (meaning is None or name == meaning):
            found.append(item)
        found += sr_items(item, value_type, meaning)
    return found
