"""healthy-check's data plumbing and counting, on a generated normal/-style folder (no real data)."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from core.research import healthy_check as hc


def _normal_folder(root, n=4):
    """normal/-style: images/<src>/<vol>/NNN.png (neurological view) + manifest.csv."""
    folder = root / "images" / "src" / "vol_T1"
    folder.mkdir(parents=True)
    rows = []
    for k, idx in enumerate(range(0, 2 * n, 2)):            # every 2nd slice kept
        img = np.zeros((20, 16), np.uint8)
        img[2:18, 2:14] = 60 + 10 * k
        img[3, 12] = 250                                     # a marker: top row band, patient's right
        Image.fromarray(img).save(folder / f"{idx:03d}.png")
        rows.append({"image": f"images/src/vol_T1/{idx:03d}.png", "source": "src", "subject": "s",
                     "sequence": "T1", "slice": idx, "n_slices": 2 * n, "orig_shape": f"16x20x{2 * n}",
                     "orig_spacing": "1x1x1.5", "licence": "x", "skull_stripped": "no", "set": "images"})
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(reversed(rows))                           # order comes from `slice`, not the file
    return root


def test_normal_volumes_stack_in_slice_order_with_ras_orientation(tmp_path):
    from core.preprocess import slices

    vols = list(hc.normal_volumes(_normal_folder(tmp_path)))
    assert len(vols) == 1
    name, vol = vols[0]
    assert name == "images/src/vol_T1" and vol.shape == (4, 20, 16)
    assert vol.spacing[0] == pytest.approx(3.0)                # slice step 2 x 1.5 mm
    disp = slices(vol, "axial", normalize=False)
    assert [float(d[10, 8]) for d in disp] == [60.0, 70.0, 80.0, 90.0]   # inferior -> superior
    # radiological display: the PNG's patient-right marker (image right) moves to the viewer's left
    assert disp[0][3, 16 - 1 - 12] == 250.0


def test_rule_before_and_the_counts():
    assert hc.rule_before(np.array([0.1, 0.6, 0.2]), 0.5) == (True, pytest.approx(0.6))
    assert hc.rule_before(np.array([0.1, 0.2]), 0.5)[0] is False
    rows = [{"before": "tumour", "after": "no tumour"}, {"before": "no tumour", "after": "cannot assess"}]
    s = hc._spec_summary(rows)
    assert s["n"] == 2 and s["before"]["no_tumour"] == 1 and s["after"]["no_tumour"] == 1
    assert s["after"]["cannot_assess"] == 1 and s["after"]["specificity"] == 0.5
    assert hc._sens_summary(rows)["before"]["sensitivity"] == 0.5
    assert hc._runs(np.array([1, 1, 0, 1, 1, 1, 0], bool)) == 3


def test_locked_test_patients_come_from_the_card(tmp_path):
    import json

    card = tmp_path / "card.json"
    card.write_text(json.dumps({"recipe": {"split": {"locked_test": {"patients": [
        "tcga-lgg:TCGA_A", "figshare-cemri:1", "tcga-lgg:TCGA_B"]}}}}))
    assert hc.locked_test_patients("tcga-lgg", card) == ["TCGA_A", "TCGA_B"]
    assert len(hc.locked_test_patients("tcga-lgg")) > 0        # the shipped active card


def test_held_out_patients_follow_the_checked_models_card():
    card = {"training_data": [{"name": "tcga-lgg"}, {"name": "normal"}],
            "recipe": {"split": {"locked_test": {"patients": ["normal:chris", "tcga-lgg:TCGA_A"]}}}}
    assert hc.held_out_patients("normal", card) == {"chris"}      # trained on normal/: only its test subjects
    assert hc.held_out_patients("br35h", card) is None            # not a training source: all held out
    assert hc.locked_test_patients("tcga-lgg", card) == ["TCGA_A"]


def test_normal_volumes_are_the_training_loaders(tmp_path):
    from core.training import datasets

    assert hc.normal_volumes is datasets.normal_volumes and hc.stack_volume is datasets.stack_volume
    root = _normal_folder(tmp_path)
    assert datasets.normal_subjects(root) == {"images/src/vol_T1": "s"}
