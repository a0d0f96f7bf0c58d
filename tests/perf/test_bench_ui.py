"""`python -m core bench-ui`: its arguments, table and targets, the CPU accounting from /proc and
the generated scans (fast); the real browser run only under the `browser` marker, on a small
volume (timings are never asserted: the machine is shared)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.cli import build_parser, main
from core.commands import bench_ui
from core.perf import browser, inputs, proc


def _stat(pid: int, ppid: int, ticks: tuple[int, int, int, int], comm: str = "python") -> str:
    utime, stime, cutime, cstime = ticks
    rest = ["S", ppid, 1, 1, 0, -1, 4194304, 100, 0, 0, 0, utime, stime, cutime, cstime, 20, 0, 3]
    return f"{pid} ({comm}) " + " ".join(str(v) for v in rest)


def _fake_proc(root: Path, rows: dict[int, tuple[int, tuple[int, int, int, int]]]) -> Path:
    for pid, (ppid, ticks) in rows.items():
        (root / str(pid)).mkdir(parents=True, exist_ok=True)
        (root / str(pid) / "stat").write_text(_stat(pid, ppid, ticks) + "\n")
    (root / "self").mkdir(exist_ok=True)  # not a process entry: ignored
    return root


def test_parse_stat_reads_fields_after_a_command_name_with_spaces_and_parentheses():
    line = _stat(42, 7, (100, 20, 3, 4), comm="streamlit (run) x)")
    assert proc.parse_stat(line) == (7, 127)


def test_cpu_seconds_counts_the_process_and_its_descendants_only(tmp_path):
    root = _fake_proc(
        tmp_path,
        {
            100: (1, (200, 100, 0, 0)),  # the server
            101: (100, (50, 50, 0, 0)),  # its child
            102: (101, (10, 0, 0, 0)),  # a grandchild
            200: (1, (9000, 9000, 0, 0)),  # someone else's process
        },
    )
    assert proc.cpu_seconds(100, root) == pytest.approx(410 / proc.TICKS_PER_S)
    assert proc.cpu_seconds(101, root) == pytest.approx(110 / proc.TICKS_PER_S)
    assert proc.cpu_seconds(999, root) == 0.0


def test_idle_cpu_is_the_tree_s_cpu_over_the_window_as_a_fraction_of_one_core(tmp_path):
    root = _fake_proc(tmp_path, {100: (1, (200, 100, 0, 0)), 101: (100, (0, 0, 0, 0))})

    def busy_window(seconds):  # during the window the child uses 0.5 s of CPU
        _fake_proc(tmp_path, {101: (100, (proc.TICKS_PER_S // 2, 0, 0, 0))})

    fraction = proc.idle_cpu(100, 10.0, root, sleep=busy_window)
    assert fraction > 0.5  # 0.5 CPU-seconds in (much) less than a second of wall time
    assert proc.cpu_fraction(2.0, 2.5, 10.0) == pytest.approx(0.05)
    assert proc.cpu_fraction(2.0, 1.0, 10.0) == 0.0 and proc.cpu_fraction(1.0, 2.0, 0.0) == 0.0


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_cpu_seconds_of_this_process_grows_with_work():
    before = proc.cpu_seconds(os.getpid())
    x = 0
    while proc.cpu_seconds(os.getpid()) - before < 0.05:
        x += sum(range(10_000))
    assert proc.cpu_seconds(os.getpid()) > before


def test_arguments_and_their_defaults():
    args = build_parser().parse_args(["bench-ui"])
    assert (args.slices, args.repeats, args.idle_seconds, args.pacs, args.json, args.device) == (
        155,
        3,
        10.0,
        False,
        None,
        "cpu",
    )
    assert args.volume is None and args.func is bench_ui.run
    assert build_parser().parse_args(["bench-ui", "--json"]).json == "-"
    args = build_parser().parse_args(["bench-ui", "--pacs", "--json", "out.json", "--repeats", "5", "--slices", "0"])
    assert (args.pacs, args.json, args.repeats, args.slices) == (True, "out.json", 5, 0)


RESULT = {
    "volume": "155-slice volume from x.nii.gz",
    "device": "cpu",
    "start_to_ready_s": 7.5,
    "first_upload_s": 2.2,
    "start_to_first_verdict_s": 9.7,
    "warm_upload_s": 2.1,
    "warm_upload_runs_s": [2.0, 2.1, 2.3],
    "models_s": [0.9, 0.8, None, 0.8],
    "idle_cpu_cores": 0.004,
    "skipped": {"pacs_in_process_warm_s": "Orthanc is not installed"},
    "load_start": [1.0, 2.0, 3.0],
    "load_end": [1.5, 2.0, 3.0],
}


def test_targets_and_table():
    met = bench_ui.targets(RESULT)
    assert met == {
        "first upload -> verdict": True,
        "app start -> first verdict (upload when ready)": True,
        "warm upload -> verdict (median)": False,
        "idle server CPU, tab open (cores)": True,
    }
    text = bench_ui.table(RESULT)
    row = next(line for line in text.splitlines() if line.startswith("warm upload -> verdict"))
    assert "2.10 s" in row and "<= 1.5 s" in row and row.endswith("MISSED")
    row = next(line for line in text.splitlines() if line.startswith("idle server CPU"))
    assert "0.004" in row and row.endswith("OK")
    assert "skipped: Orthanc is not installed" in text
    assert "PACS open -> verdict, browser" not in text  # neither measured nor skipped
    assert "models' own time per verdict: 0.90 s, 0.80 s, -, 0.80 s" in text
    assert "load average: start 1.00 2.00 3.00, end 1.50 2.00 3.00" in text
    assert bench_ui.median([3.0, None, 1.0, 2.0]) == 2.0 and bench_ui.median([None]) is None


def test_a_missing_browser_volume_or_pacs_flag_is_one_clear_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(browser, "missing", lambda: "/usr/bin/chromium is missing (apt-get install chromium)")
    assert main(["bench-ui"]) == 2
    assert "chromium is missing" in capsys.readouterr().err
    assert main(["bench-ui", "--no-browser"]) == 2
    assert "add --pacs" in capsys.readouterr().err
    assert main(["bench-ui", "--no-browser", "--pacs", "--volume", str(tmp_path / "none.nii.gz")]) == 2
    assert "no such volume" in capsys.readouterr().err


def test_a_volume_that_cannot_be_read_ends_as_one_line(monkeypatch, capsys, tmp_path):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti")
    monkeypatch.setattr(browser, "missing", lambda: None)
    assert main(["bench-ui", "--volume", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error while preparing the volume:") and "Traceback" not in err


def test_generated_scans_have_the_slices_asked_for_and_differ(tmp_path):
    img = inputs.stretched(slices=31)
    assert img.shape == (256, 256, 31) and img.get_data_dtype() == np.int16
    paths = inputs.nifti_files(tmp_path, 2, img)
    assert [p.name for p in paths] == ["bench_0.nii.gz", "bench_1.nii.gz"]
    assert paths[0].read_bytes() != paths[1].read_bytes()
    assert inputs.stretched(slices=None).shape == (256, 256, 24)


def test_the_dicom_series_loads_as_the_same_volume_without_identifying_data(tmp_path):
    from core.io import load_volume

    img = inputs.stretched(slices=6)
    series = inputs.dicom_series(img, "NGBENCH-X", seed="t")
    for i, ds in enumerate(series):
        ds.save_as(tmp_path / f"{i}.dcm", enforce_file_format=True)
    volume = load_volume(sorted(tmp_path.glob("*.dcm")))
    from_nifti = load_volume(_saved(img, tmp_path / "v.nii.gz"))
    assert volume.shape == from_nifti.shape == (6, 256, 256)
    assert np.allclose(volume.array, from_nifti.array)
    assert "NGBENCH-X" not in json.dumps(volume.meta, default=str)
    assert len({ds.StudyInstanceUID for ds in series}) == 1


def _saved(img, path: Path) -> Path:
    import nibabel as nib

    nib.save(img, str(path))
    return path


@pytest.mark.slow
@pytest.mark.skipif(
    not Path("/usr/sbin/Orthanc").exists(), reason="needs Orthanc (apt-get install orthanc orthanc-dicomweb)"
)
def test_pacs_path_in_process_without_a_browser(capsys):
    assert main(["bench-ui", "--no-browser", "--pacs", "--slices", "12", "--repeats", "1", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    runs = res["pacs_in_process_runs"]
    assert len(runs) == 2 and all(r["slices"] == 12 and r["total_s"] >= r["predict_s"] > 0 for r in runs)
    assert res["pacs_in_process_warm_s"] == runs[1]["total_s"]
    assert "warm_upload_s" not in res


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing()))
def test_full_run_in_the_browser(tmp_path, capsys):
    pacs = ["--pacs"] if shutil.which("Orthanc") or Path("/usr/sbin/Orthanc").exists() else []
    out = tmp_path / "bench.json"
    assert main(["bench-ui", "--slices", "12", "--repeats", "1", "--idle-seconds", "1", "--json", str(out), *pacs]) == 0
    res = json.loads(out.read_text())
    assert 0 < res["start_to_ready_s"] < res["start_to_first_verdict_s"]
    assert res["first_upload_s"] > 0 and res["warm_upload_s"] == res["warm_upload_runs_s"][0] > 0
    assert res["idle_cpu_cores"] >= 0 and res["headline"]
    assert set(res["targets_met"]) >= {"warm upload -> verdict (median)", "idle server CPU, tab open (cores)"}
    if pacs:
        assert len(res["pacs_browser_runs_s"]) == 2 and res["pacs_browser_warm_s"] > 0
    assert "warm upload -> verdict" in capsys.readouterr().out
