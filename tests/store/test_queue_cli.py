"""`python -m core queue ...` and `jobs ...` through core.cli.main (in-process)."""

import json

import numpy as np
import pytest
from PIL import Image

from core.cli import main


@pytest.fixture
def pool(tmp_path, db_url):
    root = tmp_path / "pool"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    names = ["a1.png", "a2.png", "b1.png", "sub/c1.png"]
    for name in names:
        Image.fromarray((rng.random((32, 32)) * 200 + 40).astype(np.uint8)).save(root / name)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "blank.png")
    csv = tmp_path / "labels.csv"
    csv.write_text(
        "image,patient,label\npool/a1.png,PA,glioma\npool/a2.png,PA,glioma\n"
        "pool/b1.png,PB,meningioma\npool/sub/c1.png,PC,pituitary\n"
    )
    return root, csv


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_import_next_label_conflict_stats(pool, capsys):
    from core.store import Store

    root, csv = pool
    assert main(["queue", "import", str(root), "--csv", str(csv), "--task", "tumor_type", "--json"]) == 0
    res = _json(capsys)
    assert res["cases"] == 4 and res["items"] == 4 and res["matched_csv_rows"] == 4
    assert any("blank" in e for e in res["errors"])

    assert (
        main(["queue", "next", "--task", "tumor_type", "--strategy", "random", "--k", "10", "--cap", "1", "--json"])
        == 0
    )
    items = _json(capsys)
    assert len(items) == 3  # patient PA capped at one item
    text = json.dumps(items)
    assert "glioma" not in text and "PA" not in text  # hidden truth never shown
    item = items[0]["item_id"]

    assert main(["queue", "label", str(item), "glioma", "--reviewer", "ann", "--expect-version", "0", "--json"]) == 0
    assert _json(capsys)["version"] == 1
    assert main(["queue", "label", str(item), "pituitary", "--reviewer", "bob", "--expect-version", "0", "--json"]) == 3
    conflict = _json(capsys)
    assert conflict["current_label"]["value"] == "glioma" and conflict["current_version"] == 1
    assert main(["queue", "label", str(item), "pituitary", "--reviewer", "bob", "--expect-version", "0"]) == 3
    assert "current label: glioma" in capsys.readouterr().out

    assert main(["queue", "stats", "--json"]) == 0
    stats = _json(capsys)["tumor_type"]
    assert stats["total"] == 4 and stats["labelled"] == 1 and stats["by_class"] == {"glioma": 1}

    truth = Store.open().cases.hidden_truth()
    assert sorted(t["patient_key"] for t in truth.values()) == ["PA", "PA", "PB", "PC"]
    assert sorted(t["item_label"] for t in truth.values()) == ["glioma", "glioma", "meningioma", "pituitary"]


def test_import_as_job_and_jobs_list(pool, capsys):
    from core.store import Store

    root, csv = pool
    repo = Store.open()
    job = repo.jobs.create("import")
    assert main(["queue", "import", str(root / "sub"), "--job", str(job), "--task", "grade"]) == 0
    capsys.readouterr()
    view = repo.jobs.get(job)
    assert view.status == "succeeded" and view.metrics["cases"] == 1
    assert main(["jobs", "list", "--json"]) == 0
    assert [j["id"] for j in _json(capsys)] == [job]
    assert main(["jobs", "cancel", str(job)]) == 1  # already finished


@pytest.mark.data
def test_import_real_slices_with_shared_manifests(shared_data, tmp_path, monkeypatch, capsys):
    """figshare manifest (image, label, pid_family) and TCGA manifest (image, patient, grade) as
    they are; TCGA slices with the three sequences kept as an RGB item."""
    from core.store import Store

    monkeypatch.setenv("NEUROGRADE_DB_URL", f"sqlite:///{tmp_path / 'real.db'}")
    fig = shared_data / "figshare-cemri"
    images = [fig / "images" / f"{i}.jpg" for i in (1, 2, 3)]
    assert (
        main(
            ["queue", "import", *map(str, images), "--csv", str(fig / "manifest.csv"), "--task", "tumor_type", "--json"]
        )
        == 0
    )
    assert _json(capsys)["matched_csv_rows"] == 3
    tcga = shared_data / "tcga-lgg"
    folder = sorted(p for p in tcga.iterdir() if p.is_dir())[0]
    assert (
        main(
            [
                "queue",
                "import",
                str(folder / "010.jpg"),
                "--csv",
                str(tcga / "manifest.csv"),
                "--task",
                "grade",
                "--sequences",
                "t1pre,flair,t1post",
                "--json",
            ]
        )
        == 0
    )
    assert _json(capsys)["matched_csv_rows"] == 1
    repo = Store.open()
    truth = repo.cases.hidden_truth()
    assert [t["case_label"] for t in truth.values()][:3] == ["meningioma"] * 3
    assert list(truth.values())[3]["case_label"] in ("G2", "G3")
    assert repo.cases.image(max(truth)).shape[-1] == 3
