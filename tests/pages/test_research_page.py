"""Research page in AppTest, on small synthetic result files (tests/fixtures/research/)."""

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.auth_helpers import sign_in

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "research"


def _page(role: str = "trainer") -> AppTest:
    """The page, signed in with `role` (re-running a study is a trainer's job)."""
    return sign_in(AppTest.from_file(str(REPO / "pages" / "research.py"), default_timeout=60), "Dr Ada", role)


@pytest.fixture
def committed(tmp_path, monkeypatch):
    d = tmp_path / "committed"
    shutil.copytree(FIXTURES, d)
    monkeypatch.setenv("NEUROGRADE_RESEARCH_RESULTS", str(d))
    return d


def test_each_study_shows_chart_table_and_command(committed):
    at = _page().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Research"
    assert [t.label for t in at.tabs] == [
        "Active learning",
        "Transferability",
        "ACGAN class balancing",
        "Grade signal check",
    ]
    codes = [c.value for c in at.code]
    assert any(c.startswith("python -m core al-simulate --task grade") for c in codes)
    assert any(c.startswith("python -m core transferability") for c in codes)
    assert any(c.startswith("python -m core imbalance-ablation") for c in codes)
    assert any(c.startswith("python -m core grade-baseline") for c in codes)
    # a chart and a table for each study (transferability: agreement + candidates); the grade check: a table
    assert len(at.get("plotly_chart")) == 3
    assert len(at.dataframe) == 5
    grade = at.dataframe[4].value
    assert list(grade["predictor"][:5]) == [
        "log_volume",
        "t1pre_ratio",
        "flair_ratio",
        "t1post_ratio",
        "t1post_ratio_p90",
    ]
    assert grade["AUC"].iloc[5] == 0.55 and grade["± sd"].iloc[5] == 0.04
    assert "age" in grade["predictor"].iloc[6]
    md = " ".join(m.value for m in at.markdown)
    assert "Full-pool baseline patient auc" in md and "Target (uncertainty sampling" in md
    # the unavailable ImageNet candidate is listed as such, not scored
    cands = at.dataframe[2].value
    row = cands[cands["candidate"] == "imagenet:vgg19"].iloc[0]
    assert row["status"] == "unavailable"
    assert row["LogME"] is None or row["LogME"] != row["LogME"]  # None (or NaN in the frame)
    # slice level switch redraws without error
    at.radio(key="al_level").set_value("slice_auc").run()
    assert not at.exception
    assert any("slice auc" in m.value for m in at.markdown)


def test_no_results_says_so_and_offers_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROGRADE_RESEARCH_RESULTS", str(tmp_path / "nothing"))
    at = _page().run()
    assert not at.exception
    assert len(at.info) == 4 and all("No " in i.value for i in at.info)
    assert len(at.get("plotly_chart")) == 0
    # the re-run forms show the command they will run
    assert any("al-simulate" in c.value for c in at.caption)


def test_rerun_button_launches_a_background_job(committed, monkeypatch):
    import core.research.studies as studies

    launched = []

    def fake_launch(job_id, argv, env=None, repo=None):
        launched.append((job_id, list(argv)))

    monkeypatch.setattr("core.research.studies.launch", fake_launch)
    at = _page().run()
    at.tabs[2]  # ACGAN tab exists
    buttons = [b for b in at.button if b.label == "Start"]
    assert len(buttons) == 4
    buttons[2].click().run()  # the ACGAN form
    assert not at.exception, [e.value for e in at.exception]
    assert launched, "no job launched"
    job_id, argv = launched[0]
    assert argv[:3] == ["-m", "core", "imbalance-ablation"]
    assert argv[-2:] == ["--job", str(job_id)]
    assert "--minority" in argv and "meningioma" in argv
    from core.store import Store

    job = Store.open().jobs.get(job_id)
    assert job.kind == "research" and job.params["study"] == "acgan"
    assert job.params["output"].endswith("research/acgan_tumor_type.json")
    assert any("started" in s.value for s in at.success)
    assert studies.STUDIES["acgan"]["command"] in job.params["command"]


def test_a_clinician_sees_the_results_but_cannot_start_a_study(committed, monkeypatch):
    launched = []
    monkeypatch.setattr("core.research.studies.launch", lambda *a, **k: launched.append(a))
    at = _page(role="clinician").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not [b for b in at.button if b.label == "Start"]
    from core import auth
    from core.research import studies

    with pytest.raises(auth.PermissionDenied):  # and the core call refuses it too
        studies.launch_study("acgan", {"task": "tumor_type"}, actor=auth.Identity("Dr Ada", "clinician"))
    assert not launched


def test_grade_check_rerun_runs_the_grade_baseline_command(committed, monkeypatch):
    launched = []
    monkeypatch.setattr("core.research.studies.launch", lambda job_id, argv, env=None, repo=None: launched.append(argv))
    at = _page().run()
    [b for b in at.button if b.label == "Start"][3].click().run()
    assert not at.exception, [e.value for e in at.exception]
    argv = launched[0]
    assert argv[:5] == ["-m", "core", "grade-baseline", "--task", "grade"]
    assert argv[argv.index("--json") + 1].endswith("research/baseline_grade.json")
    # the command it will run parses
    from core.cli import build_parser

    build_parser().parse_args(argv[2 : argv.index("--job")])
