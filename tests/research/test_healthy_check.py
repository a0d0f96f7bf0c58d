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
    for k, idx in enumerate(range(0, 2 * n, 2)):  # every 2nd slice kept
        img = np.zeros((20, 16), np.uint8)
        img[2:18, 2:14] = 60 + 10 * k
        img[3, 12] = 250  # a marker: top row band, patient's right
        Image.fromarray(img).save(folder / f"{idx:03d}.png")
        rows.append(
            {
                "image": f"images/src/vol_T1/{idx:03d}.png",
                "source": "src",
                "subject": "s",
                "sequence": "T1",
                "slice": idx,
                "n_slices": 2 * n,
                "orig_shape": f"16x20x{2 * n}",
                "orig_spacing": "1x1x1.5",
                "licence": "x",
                "skull_stripped": "no",
                "set": "images",
            }
        )
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(reversed(rows))  # order comes from `slice`, not the file
    return root


def test_normal_volumes_stack_in_slice_order_with_ras_orientation(tmp_path):
    from core.preprocess import slices

    vols = list(hc.normal_volumes(_normal_folder(tmp_path)))
    assert len(vols) == 1
    name, vol = vols[0]
    assert name == "images/src/vol_T1" and vol.shape == (4, 20, 16)
    assert vol.spacing[0] == pytest.approx(3.0)  # slice step 2 x 1.5 mm
    disp = slices(vol, "axial", normalize=False)
    assert [float(d[10, 8]) for d in disp] == [60.0, 70.0, 80.0, 90.0]  # inferior -> superior
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
    card.write_text(
        json.dumps(
            {
                "recipe": {
                    "split": {"locked_test": {"patients": ["tcga-lgg:TCGA_A", "figshare-cemri:1", "tcga-lgg:TCGA_B"]}}
                }
            }
        )
    )
    assert hc.locked_test_patients("tcga-lgg", card) == ["TCGA_A", "TCGA_B"]
    assert len(hc.locked_test_patients("tcga-lgg")) > 0  # the shipped active card


def test_held_out_patients_follow_the_checked_models_card():
    card = {
        "training_data": [{"name": "tcga-lgg"}, {"name": "normal"}],
        "recipe": {"split": {"locked_test": {"patients": ["normal:chris", "tcga-lgg:TCGA_A"]}}},
    }
    assert hc.held_out_patients("normal", card) == {"chris"}  # trained on normal/: only its test subjects
    assert hc.held_out_patients("br35h", card) is None  # not a training source: all held out
    assert hc.locked_test_patients("tcga-lgg", card) == ["TCGA_A"]


def test_normal_volumes_are_the_training_loaders(tmp_path):
    from core.training import datasets

    assert hc.normal_volumes is datasets.normal_volumes and hc.stack_volume is datasets.stack_volume
    root = _normal_folder(tmp_path)
    assert datasets.normal_subjects(root) == {"images/src/vol_T1": "s"}


class _FakePresence:
    """Stands in for the Predictor: P(tumour) per slice from the slice's mean intensity; the
    volume verdict is "tumour" when a slice is bright."""

    model_versions = {"presence": "presence@0.0.1"}
    precision = {"presence": "fp32"}
    device = "cpu"

    def __init__(self, card):
        from types import SimpleNamespace

        self.models = {"presence": SimpleNamespace(card=card)}

    def predict_volume(self, vol, tasks):
        from types import SimpleNamespace

        from core.inference import NO_TUMOUR_VERDICT

        p = vol.array.reshape(vol.array.shape[0], -1).mean(1) / 255.0
        rows = [{"presence": float(v), "tissue": 1.0, "evidence": float(v)} for v in p]
        res = SimpleNamespace(probabilities=[1 - p.max(), p.max()], classes=["no_tumor", "tumor"], status="ok")
        return SimpleNamespace(
            slices=rows,
            tasks={"presence": res},
            refer=False,
            key_slices=[int(p.argmax())],
            verdict="tumour" if p.max() >= 0.5 else NO_TUMOUR_VERDICT,
        )


def _sources(root):
    """br35h/ (2 no_tumor images), tcga-lgg/ (2 patients, 4 slices, 2 with tumour) and tcia-btp/
    (one 4-slice volume: a padding slice, a tumour slice), beside normal/ (_normal_folder)."""
    import nibabel as nib

    _normal_folder(root / "normal")
    for name, rows, fields in (
        ("br35h", [{"image": f"no/{k}.png", "label": "no_tumor"} for k in range(2)], ("image", "label")),
        (
            "tcga-lgg",
            [
                {"patient": p, "case": f"{p}_1", "slice": s, "image": f"{p}/{s}.png", "tumor_pixels": 9 * (s % 2)}
                for p in ("TA", "TB")
                for s in range(4)
            ],
            ("patient", "case", "slice", "image", "tumor_pixels"),
        ),
    ):
        for r in rows:
            (root / name / r["image"]).parent.mkdir(parents=True, exist_ok=True)
            bright = 250 if r.get("tumor_pixels") else 30
            Image.fromarray(np.full((12, 12, 3), bright, np.uint8)).save(root / name / r["image"])
        with open(root / name / "manifest.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
    scan = np.full((8, 8, 4), 40.0, np.float32)
    scan[..., 0] = 0  # padding slice
    scan[..., 2] = 250
    mask = np.zeros((8, 8, 4), np.uint8)
    mask[2:5, 2:5, 2] = 1
    (root / "tcia-btp" / "S1").mkdir(parents=True)
    nib.save(nib.Nifti1Image(scan, np.eye(4)), root / "tcia-btp" / "S1" / "t0_t1post.nii.gz")
    nib.save(nib.Nifti1Image(mask, np.eye(4)), root / "tcia-btp" / "S1" / "t0_mask.nii.gz")
    return root


def test_run_healthy_check_reads_every_source_and_splits_held_out_from_trained_on(tmp_path):
    card = {
        "training_data": [{"name": "normal"}, {"name": "tcga-lgg"}],
        "recipe": {"split": {"locked_test": {"patients": ["normal:s", "tcga-lgg:TA"]}}},
    }
    said = []
    res = hc.run_healthy_check(_sources(tmp_path), _FakePresence(card), on_progress=said.append, explicit=True)
    assert res["command"].endswith("--model presence@0.0.1")
    spec, sens, tuning = res["specificity"], res["sensitivity"], res["tuning"]
    # trained on normal/: its locked-test subject is reported apart; br35h was never trained on
    assert spec["normal/images volumes held out (locked-test subjects)"]["subjects"] == ["s"]
    assert spec["normal/images volumes"]["n"] == 1 and "br35h no_tumor slices held out (locked-test images)" not in spec
    assert spec["br35h no_tumor slices (2D images)"]["after"]["specificity"] == 1.0
    # TCGA: TA is the locked test (2 tumour-free slices, read alone and as votes), TB is tuning data
    assert spec["tcga-lgg locked-test tumour-free slices (2D images)"]["n"] == 2
    assert sens["tcga-lgg locked-test pseudo-volumes"]["volumes"][0]["name"] == "TA_1"
    assert sens["tcga-lgg locked-test tumour slices (votes in their pseudo-volume)"]["after"]["sensitivity"] == 1.0
    assert [v["name"] for v in tuning["tcga-lgg trained-on pseudo-volumes"]["volumes"]] == ["TB_1"]
    # TCIA: the padding slice does not vote; the tumour slice is the only one in the mask
    assert spec["tcia-btp slices outside the masks (votes in their volume)"]["n"] == 2
    assert sens["tcia-btp volumes"]["volumes"][0]["tumour_slices"] == 1
    assert said[0] == "normal: images/src/vol_T1" and "tcia-btp: S1/t0" in said
    assert "tcia-btp volumes [volume, n=1]: sensitivity 1/1 -> 1/1" in hc.summary_text(res)
