"""Training data sets on tiny generated folders: labels, patient groups, pixels, cache, hashes."""

import shutil

import numpy as np
import pytest

from core.training import datasets
from core.training.datasets import StoreLabels, load_dataset
from tests.training._factories import br35h_like, brats_like, figshare_like, image_folder, normal_like, tcga_like


def test_image_folder_labels_groups_pixels(tmp_path):
    root = image_folder(tmp_path / "blobs", per_class=6, per_patient=3)
    ds = load_dataset(root, "tumor_type", 32)
    assert ds.classes == ["glioma", "meningioma", "pituitary"]
    assert len(ds) == 18 and ds.images.shape == (18, 32, 32) and ds.images.dtype == np.uint8
    assert np.bincount(ds.labels).tolist() == [6, 6, 6]
    assert len(set(ds.groups.tolist())) == 6  # from patients.csv, 3 images per patient
    px = ds.pixels([0, 1])
    assert px.dtype == np.float32 and 0.0 <= px.min() and px.max() <= 1.0 and px.max() > 0.9
    assert ds.summary()[0]["n_patients"] == 6 and len(ds.summary()[0]["sha256"]) == 64


def test_image_folder_without_csv_makes_each_image_a_patient(tmp_path):
    ds = load_dataset(image_folder(tmp_path / "b", ("cats", "dogs"), per_class=3, patients_csv=False), None, 32)
    assert ds.classes == ["cats", "dogs"] and len(set(ds.groups.tolist())) == 6


def test_cache_is_reused_and_keyed_by_content(tmp_path, monkeypatch):
    root = image_folder(tmp_path / "blobs", per_class=3)
    first = load_dataset(root, "tumor_type", 32)
    assert list((tmp_path / "neurograde-home" / "cache").glob("*.npz"))

    def boom(path):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(datasets, "_read_grey", boom)
    again = load_dataset(root, "tumor_type", 32)
    assert np.array_equal(first.images, again.images)
    (root / "glioma" / "000.png").unlink()  # the listing changes -> new hash, no stale cache
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset(root, "tumor_type", 32)


def test_figshare_manifest_folds_and_groups(tmp_path):
    ds = load_dataset(figshare_like(tmp_path / "fig"), "tumor_type", 32)
    assert len(ds) == 12 and set(ds.folds.tolist()) == {1, 2}
    for fam in set(ds.groups.tolist()):  # a pid_family never crosses folds
        assert len(set(ds.folds[ds.groups == fam].tolist())) == 1
    pres = load_dataset(tmp_path / "fig", "presence", 32)
    assert pres.classes == ["no_tumor", "tumor"] and set(pres.labels.tolist()) == {1}


def test_tcga_presence_uses_flair_and_grade_keeps_known_tumour_slices(tmp_path):
    root = tcga_like(tmp_path / "tcga")
    pres = load_dataset(root, "presence", 16)
    assert pres.images.ndim == 3 and pres.sequences == ("flair",)
    assert pres.labels.tolist() == [0, 1, 1, 0] * 3
    grade = load_dataset(root, "grade", 16)
    assert grade.images.shape == (4, 3, 16, 16) and grade.sequences == ("t1pre", "flair", "t1post")
    assert grade.labels.tolist() == [0, 0, 1, 1]  # unknown grade and tumour-free slices left out
    assert set(grade.groups.tolist()) == {"TCGA_AA_0001", "TCGA_AA_0002"}
    with pytest.raises(ValueError):
        load_dataset(root, "tumor_type", 16)


def test_tcia_volumes_follow_the_inference_orientation(tmp_path, fixtures_dir):
    subj = tmp_path / "tcia" / "PGBM-010"
    subj.mkdir(parents=True)
    shutil.copy(fixtures_dir / "tcia_btp_PGBM-010_post_t1post.nii.gz", subj / "post_t1post.nii.gz")
    shutil.copy(fixtures_dir / "tcia_btp_PGBM-010_post_mask.nii.gz", subj / "post_mask.nii.gz")
    ds = load_dataset(tmp_path / "tcia", "presence", 64)
    from core.io import load_volume
    from core.preprocess import slices

    pix = slices(load_volume(subj / "post_t1post.nii.gz"), "axial")
    mask = slices(load_volume(subj / "post_mask.nii.gz"), "axial", normalize=False) > 0
    keep = [k for k in range(pix.shape[0]) if pix[k].max() > 0]
    assert len(ds) == len(keep)
    assert ds.labels.tolist() == [int(mask[k].any()) for k in keep]
    k = int(np.argmax(ds.labels))  # a tumour slice: same picture, resized
    ref = datasets._resize(pix[keep[k]][None], 64)[0].astype(float)
    assert np.abs(ds.images[k].astype(float) - ref).max() <= 1


def test_brats_folder_grades_tumour_slices(tmp_path):
    ds = load_dataset(brats_like(tmp_path / "brats"), "grade", 16)
    assert ds.classes == ["LGG", "HGG"] and ds.images.shape[1] == 3
    assert len(ds) == 4 * 2 and sorted(set(ds.labels.tolist())) == [0, 1]
    pres = load_dataset(tmp_path / "brats", "presence", 16)
    assert pres.images.ndim == 3 and pres.labels.sum() == 8 and len(pres) == 24


def test_combined_sources_and_per_source_cap(tmp_path):
    fig = figshare_like(tmp_path / "fig", n_per_class=4)
    tcga = tcga_like(tmp_path / "tcga")
    ds = load_dataset(f"{tcga},{fig}:4", "presence", 16)
    assert [p["name"] for p in ds.summary()] == ["tcga-lgg", "figshare-cemri"]
    assert ds.sequences == ("grey",)  # flair + grey slices: any one sequence
    n_fig = int(np.sum(ds.source == "figshare-cemri"))
    assert 4 <= n_fig < 12  # whole patients (2 slices each) up to ~4
    assert all(g.split(":")[0] in {"tcga-lgg", "figshare-cemri"} for g in ds.groups)


def test_tcga_presence_every_sequence_as_grey_slices_grouped_by_patient(tmp_path):
    root = tcga_like(tmp_path / "tcga")
    flair = load_dataset(root, "presence", 16)
    ds = load_dataset(f"{root}:sequences=all", "presence", 16)
    assert len(ds) == 3 * len(flair) and ds.images.ndim == 3 and ds.sequences == ("grey",)
    assert ds.labels.tolist() == flair.labels.tolist() * 3
    assert ds.groups.tolist() == flair.groups.tolist() * 3  # a patient's sequences: one group
    assert ds.source.tolist() == [f"tcga-lgg/{q}" for q in ("t1pre", "flair", "t1post") for _ in range(12)]
    assert np.array_equal(ds.images[12:24], flair.images)  # the FLAIR block is the FLAIR load
    for q, block in zip(("t1pre", "t1post"), (ds.images[:12], ds.images[24:])):
        assert np.array_equal(block, datasets.load_tcga_lgg(root, "presence", 16, presence_channel=q).images)
    part = ds.summary()[0]
    assert part["n_images"] == 36 and part["n_patients"] == 3 and part["sequences"] == ["t1pre", "flair", "t1post"]
    every = load_dataset(f"{root}:sequences=all:every=2", "presence", 16)  # slices 1 and 3 of each case
    assert len(every) == 18 and every.labels.tolist() == [0, 1] * 9
    with pytest.raises(ValueError, match="do not apply"):
        load_dataset(
            f"{tcga_like(tmp_path / 't2')}:every=2,{figshare_like(tmp_path / 'fig')}:sequences=all", "presence", 16
        )


def test_tcga_every_sequence_splits_keep_a_patients_sequences_together(tmp_path):
    from core.training.experiment import TrainConfig, make_splits

    ds = load_dataset(
        f"{tcga_like(tmp_path / 'tcga')}:sequences=all,{normal_like(tmp_path / 'normal')}", "presence", 16
    )
    sp = make_splits(ds, TrainConfig(task="presence", data="-", folds=2, test_fraction=0.3, stratify="source"))
    for a, b in [(sp["pool"], sp["test"])] + list(sp["folds"]):
        assert not set(ds.groups[a].tolist()) & set(ds.groups[b].tolist())
    test_sources = {str(g).split(":")[0] for g in ds.groups[sp["test"]]}
    assert test_sources == {"tcga-lgg", "normal"}  # stratified by source and label
    for g in set(ds.groups[sp["test"]].tolist()) & {f"tcga-lgg:TCGA_AA_000{i}" for i in (1, 2, 3)}:
        assert sorted(set(ds.source[ds.groups == g].tolist())) == [
            "tcga-lgg/flair",
            "tcga-lgg/t1post",
            "tcga-lgg/t1pre",
        ]
    assert sp["info"]["stratified_by"].startswith("source")


def test_normal_brains_are_tumour_free_grouped_by_subject_without_templates(tmp_path):
    root = normal_like(tmp_path / "normal")
    assert datasets.detect_kind(root) == "normal"
    ds = load_dataset(root, "presence", 16)
    assert len(ds) == 5 * 3 and set(ds.labels.tolist()) == {0}  # templates/ left out
    assert sorted(set(ds.groups.tolist())) == ["ann", "bob", "cid", "dan"]  # by subject, not folder
    assert set(ds.source[ds.groups == "ann"].tolist()) == {"normal/srcA/ann_T1", "normal/srcB/ann_PD"}
    # one volume is normalised together: its slices keep their order of brightness
    vol = ds.images[ds.source == "normal/srcA/ann_T1"].reshape(3, -1).max(1)
    assert vol[0] < vol[1] < vol[2] == 255
    assert ds.summary()[0]["n_patients"] == 4
    with pytest.raises(ValueError, match="presence only"):
        load_dataset(root, "tumor_type", 16)


def test_normal_subject_never_on_both_sides_of_a_split(tmp_path):
    from core.training.experiment import TrainConfig, make_splits

    ds = load_dataset(f"{normal_like(tmp_path / 'normal')},{br35h_like(tmp_path / 'br35h')}", "presence", 16)
    sp = make_splits(ds, TrainConfig(task="presence", data="-", folds=2, test_fraction=0.25, stratify="source"))
    ann = np.flatnonzero(ds.groups == "normal:ann")
    assert len(ann) == 6
    for a, b in [(sp["pool"], sp["test"])] + list(sp["folds"]):
        assert not (set(ann) & set(a)) or not (set(ann) & set(b))


def test_br35h_labels_and_each_image_its_own_group(tmp_path):
    root = br35h_like(tmp_path / "br35h", n_tumor=3, n_none=2)
    assert datasets.detect_kind(root) == "br35h"
    ds = load_dataset(root, "presence", 16)
    assert ds.labels.tolist() == [1, 1, 1, 0, 0] and ds.images.shape == (5, 16, 16)
    assert len(set(ds.groups.tolist())) == 5 and ds.groups[0] == "images/yes/0000.jpg"
    assert "not patient-level" in ds.summary()[0]["note"]


def test_new_sources_get_their_own_cache_keys(tmp_path):
    load_dataset(f"{normal_like(tmp_path / 'normal')},{br35h_like(tmp_path / 'br35h')}", "presence", 16)
    names = sorted(p.name.split("-")[0] for p in (tmp_path / "neurograde-home" / "cache").glob("*.npz"))
    assert names == ["br35h", "normal"]


def test_source_options_parse_and_survive_data_for_card():
    from core.training.evaluation import data_for_card

    assert datasets.parse_source("/d/tcga-lgg:sequences=all:every=2:600") == (
        "/d/tcga-lgg",
        600,
        {"sequences": "all", "every": "2"},
    )
    assert datasets.parse_source("/d/fig:600") == ("/d/fig", 600, {})
    assert datasets.parse_source("/d/normal") == ("/d/normal", None, {})
    card = {"recipe": {"data": "/nowhere/tcga-lgg:sequences=all,/nowhere/figshare-cemri:600"}}
    assert data_for_card(card, "/x/tcga-lgg,/x/figshare-cemri") == "/x/tcga-lgg:sequences=all,/x/figshare-cemri:600"


def test_store_labels_is_a_stub_for_now():
    with pytest.raises(NotImplementedError, match="arrives with the review queue"):
        StoreLabels().load("presence", 64)


def test_tcga_tumour_slices_from_flair_only_and_negatives_from_every_sequence(tmp_path):
    root = tcga_like(tmp_path / "tcga")
    ds = load_dataset(f"{root}:sequences=all:tumour_sequences=flair", "presence", 16)
    assert len(ds) == 12 + 2 * 6  # FLAIR: 12; T1 pre/post: 6 tumour-free each
    assert set(ds.source[ds.labels == 1].tolist()) == {"tcga-lgg/flair"}
    assert sorted(set(ds.source[ds.labels == 0].tolist())) == ["tcga-lgg/flair", "tcga-lgg/t1post", "tcga-lgg/t1pre"]
    assert ds.summary()[0]["n_images"] == 24 and "FLAIR" in ds.summary()[0]["note"].upper()


@pytest.mark.data
def test_real_normal_and_br35h_load_as_documented(shared_data):
    normal = load_dataset(shared_data / "normal", "presence", 32)
    assert len(normal) == 907 and set(normal.labels.tolist()) == {0}  # templates left out
    assert len(set(normal.groups.tolist())) == 9  # 10 volumes, 9 people
    assert set(normal.source[normal.groups == "chris"].tolist()) == {
        "normal/MRIcron/chris_T1",
        "normal/niivue-demo-images/chris_PD",
    }
    br = load_dataset(shared_data / "br35h", "presence", 32)
    assert np.bincount(br.labels).tolist() == [185, 222] and len(set(br.groups.tolist())) == 407
