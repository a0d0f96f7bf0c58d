"""The PACS path without the browser: studies into a throwaway Orthanc, then "Open from PACS" as
the scan page does it (`core.pacs.open_study`: WADO-RS into a temporary folder, read as one volume)
followed by the cascade (`Predictor.predict_volume`), timed step by step."""

from __future__ import annotations

import tempfile
import time

import nibabel as nib

from core.pacs import open_study
from core.pacs.testing import Orthanc
from core.perf.inputs import dicom_series, variant

PATIENT = "NGBENCH-{}"  # made-up patient IDs, one study each


def seed_studies(server: Orthanc, img: nib.Nifti1Image, count: int) -> list[tuple[str, str]]:
    """`count` one-series studies of `img` (intensities varied) in the PACS: [(patient ID, study UID)]."""
    studies = []
    for i in range(count):
        series = dicom_series(variant(img, i), PATIENT.format(i), seed=f"neurograde-bench-{i}")
        server.upload(series)
        studies.append((PATIENT.format(i), str(series[0].StudyInstanceUID)))
    return studies


def open_and_predict(client, study_uid: str, predictor) -> dict[str, float]:
    """Seconds to pull and read the study, to run the cascade, and both."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="neurograde-bench-pacs-") as folder:
        volume, _ = open_study(client, study_uid, folder)
    t1 = time.perf_counter()
    predictor.predict_volume(volume)
    t2 = time.perf_counter()
    return {"open_s": t1 - t0, "predict_s": t2 - t1, "total_s": t2 - t0, "slices": int(volume.shape[0])}
