"""core.research.grade_baseline: the mask-based grade signal check, on generated TCGA-like data."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from core.cli import main
from core.research.grade_baseline import FEATURES, run_grade_baseline, slice_features


def test_slice_features_by_hand():
    img = np.zeros((4, 4, 3), np.uint8)
    img[:, :] = (50, 100, 40)  # brain
    img[0, 0] = (50, 200, 120)  # tumour: flair twice, t1post three times the brain
    img[3, 3] = 0  # background, not brain
    mask = np.zeros((4, 4), np.uint8)
    mask[0, 0] = 255
    f = slice_features(img, mask)
    assert f["pixels"] == 1
    assert f["t1pre_ratio"] == pytest.approx(1.0)
    assert f["flair_ratio"] == pytest.approx(2.0)
    assert f["t1post_ratio"] == pytest.approx(3.0)


def _enhancing_g3(root, n_patients=24, seed=0):
    """TCGA-like folder: G3 patients' tumours enhance on t1post (ratio ~1.6), G2 ones do not (~1.0);
    tumour size is unrelated to grade."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        g3 = p % 2 == 1
        case = f"TCGA_XX_{p:04d}_20000101"
        (root / case).mkdir(parents=True)
        side = int(rng.integers(4, 10))
        for s in range(1, 4):
            img = np.zeros((32, 32, 3), np.uint8)
            img[4:28, 4:28] = (60, 80, 70)
            mask = np.zeros((32, 32), np.uint8)
            mask[10 : 10 + side, 10 : 10 + side] = 255
            t1post = 70 * (1.6 if g3 else 1.0) + rng.normal(0, 3)
            img[mask > 0] = (60, 150, int(np.clip(t1post, 0, 255)))
            Image.fromarray(img).save(root / case / f"{s:03d}.png")
            Image.fromarray(mask).save(root / case / f"{s:03d}_mask.png")
            rows.append(
                {
                    "image": f"{case}/{s:03d}.png",
                    "mask": f"{case}/{s:03d}_mask.png",
                    "patient": case[:12],
                    "case": case,
                    "slice": s,
                    "tumor_pixels": side * side,
                    "grade": "G3" if g3 else "G2",
                    "age": 40 + p,
                    "gender": 1,
                }
            )
    rows.append({**rows[0], "slice": 9, "tumor_pixels": 0})  # a tumour-free slice: not read
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def test_finds_contrast_enhancement_and_not_size(tmp_path):
    calls = []
    res = run_grade_baseline(
        str(_enhancing_g3(tmp_path / "lgg")),
        folds=3,
        seeds=3,
        on_progress=lambda done, total, msg: calls.append((done, total)),
    )
    assert calls[-1] == (72, 72) and len(calls) <= 11
    assert res["n_patients"] == 24 and res["n_g3"] == 12
    auc = res["single_feature_auc"]
    assert set(auc) == set(FEATURES)
    assert auc["t1post_ratio"] == 1.0 and auc["t1post_ratio_p90"] == 1.0
    assert auc["flair_ratio"] < 0.8  # same flair in both grades
    assert res["logistic_regression"]["auc_mean"] > 0.9
    assert len(res["logistic_regression"]["per_seed"]) == 3
    assert res["age_auc_reference"] is not None


def test_command_writes_a_reproducible_json(tmp_path):
    data = _enhancing_g3(tmp_path / "lgg", n_patients=12)
    out = tmp_path / "grade_baseline.json"
    assert main(["grade-baseline", "--data", str(data), "--folds", "3", "--seeds", "2", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["command"].startswith("python -m core grade-baseline") and f"--data {data}" in res["command"]
    assert res["logistic_regression"]["seeds"] == 2


@pytest.mark.data
def test_committed_result_reproduces_on_the_real_data(shared_data):
    """research/results/baseline_grade.json is what its command computes (the numbers the README quotes)."""
    from pathlib import Path

    committed = json.loads((Path(__file__).resolve().parents[2] / "research/results/baseline_grade.json").read_text())
    res = run_grade_baseline(
        str(shared_data / "tcga-lgg"),
        folds=committed["logistic_regression"]["folds"],
        seeds=committed["logistic_regression"]["seeds"],
    )
    assert res["n_patients"] == committed["n_patients"]
    for name, auc in committed["single_feature_auc"].items():
        assert res["single_feature_auc"][name] == pytest.approx(auc, abs=1e-5)
    lr = committed["logistic_regression"]
    assert res["logistic_regression"]["auc_mean"] == pytest.approx(lr["auc_mean"], abs=1e-5)
