"""`python -m core inspect`: JSON keys, text output, exit status 2 on bad input."""

import json
import os
import subprocess
import sys

from nibabel.testing import data_path
from pydicom.data import get_testdata_file

from core.cli import main
from core.config import REPO_ROOT
from tests.io import dicom_factory as f

KEYS = {
    "shape",
    "spacing",
    "orientation",
    "source_orientation",
    "modality",
    "source_format",
    "channels",
    "active_channel",
    "series",
    "warnings",
    "meta",
}


def test_json_nifti_4d(capsys):
    assert main(["inspect", os.path.join(data_path, "example4d.nii.gz"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info) == KEYS
    assert info["shape"] == [24, 96, 128] and info["orientation"] == "RAS"
    assert info["source_orientation"] == "LAS" and info["channels"] == ["t0", "t1"]
    assert info["modality"] == "MR" and info["series"] == []


def test_json_dicom_folder_with_two_series(tmp_path, capsys):
    ref = f.reference_image()
    f.write_series(f.series_from_image(ref, seed="a", series_number=1), tmp_path / "d" / "a")
    f.write_series(f.series_from_image(f.reoriented(ref, "LPS"), seed="b", series_number=2)[:3], tmp_path / "d" / "b")
    assert main(["inspect", str(tmp_path / "d"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert len(info["series"]) == 2 and info["series"][0]["selected"]
    uid = info["series"][1]["uid"]
    assert main(["inspect", str(tmp_path / "d"), "--json", "--series", uid]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape"][0] == 3 and info["series"][1]["selected"]
    assert info["source_orientation"] == "LPS" and info["spacing"] == [3.0, 1.5, 1.0]


def test_text_output_several_files(tmp_path, capsys):
    paths = f.write_series(f.series_from_image(f.reference_image()), tmp_path / "s")
    assert main(["inspect", *map(str, paths)]) == 0
    out = capsys.readouterr().out
    assert "RAS (source: RAS)" in out and "6 x 10 x 8" in out and "series" in out


def test_ct_flag(capsys):
    assert main(["inspect", get_testdata_file("CT_small.dcm")]) == 2
    assert "--allow-ct" in capsys.readouterr().err
    assert main(["inspect", get_testdata_file("CT_small.dcm"), "--allow-ct", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["modality"] == "CT"


def test_bad_input_exit_2_no_traceback(tmp_path):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"\x00garbage" * 50)
    proc = subprocess.run(
        [sys.executable, "-m", "core", "inspect", str(bad)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert proc.returncode == 2
    assert "not a recognised scan format" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
