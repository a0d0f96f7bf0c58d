"""Sequence routing: each model reads the best sequence the scan has (core.tasks `prefers`), a
multi-sequence model exactly its declared ones, and the prediction says which it read."""

from __future__ import annotations

import numpy as np
import pytest
from inference_helpers import GRADE_CLASSES, PRESENCE_CLASSES, TYPE_CLASSES, phantom, stub_loaded, volume_of
from PIL import Image

from core.inference import Predictor
from core.io import load_volume
from core.preprocess import slices
from core.sequences import canonical_sequence, find_channel, sequence_title

TCGA = "tcga_lgg_CS_4941_013.jpg"
TCGA_SEQUENCES = ["t1pre", "flair", "t1post"]


def predictor(grade_sequences=TCGA_SEQUENCES, grey=("grey",), presence_base=(2.0, -2.0)):
    """Stubs whose outputs follow the mean intensity of what they read: presence and type read one
    grey channel, grade the declared sequences."""
    return Predictor(
        {
            "presence": stub_loaded(
                "presence", PRESENCE_CLASSES, list(presence_base), [0.0, 11.5], sequences=list(grey)
            ),
            "tumor_type": stub_loaded(
                "tumor_type", TYPE_CLASSES, [0.0, 0.0, 0.0], [8.0, 0.0, 0.0], sequences=list(grey)
            ),
            "grade": stub_loaded("grade", GRADE_CLASSES, [3.0, 0.0], [0.0, 0.0], sequences=list(grade_sequences)),
        },
        device="cpu",
        precision="fp32",
    )


@pytest.fixture
def tcga(fixtures_dir):
    return load_volume(fixtures_dir / TCGA, sequences=TCGA_SEQUENCES)


def test_presence_reads_flair_on_a_tcga_slice(tcga):
    p = predictor()
    assert tcga.active_channel == "t1pre"  # what it used to read
    assert p.task_channels("presence", tcga) == (["flair"], "")
    x, why = p.task_slices("presence", tcga, slices(tcga), None, True)
    np.testing.assert_array_equal(x, slices(tcga, channel="flair"))
    pred = p.predict_volume(tcga, tasks=["presence", "tumor_type", "grade"])
    on_flair = p.predict_slices("presence", slices(tcga, channel="flair"))[0]
    on_t1pre = p.predict_slices("presence", slices(tcga, channel="t1pre"))[0]
    assert abs(on_flair[1] - on_t1pre[1]) > 0.01  # the channels tell apart
    assert pred.slices[0]["presence_probabilities"] == pytest.approx(on_flair.tolist())
    assert pred.tasks["presence"].sequences == ["flair"] and pred.tasks["presence"].read_on == "FLAIR"
    assert pred.tasks["tumor_type"].sequences == ["t1post"]  # type: T1 post-contrast first
    assert pred.tasks["grade"].sequences == TCGA_SEQUENCES
    assert pred.to_dict()["tasks"]["presence"]["sequences"] == ["flair"]


def test_channel_names_are_read_through_their_aliases(fixtures_dir):
    v = load_volume(fixtures_dir / TCGA, sequences=["T1", "FLAIR", "T1Gd"])
    p = predictor(grade_sequences=["t1", "flair", "t1ce"])  # a BraTS-trained grade card
    assert p.models["grade"].sequences == TCGA_SEQUENCES
    assert p.task_channels("presence", v)[0] == ["FLAIR"]
    assert p.task_channels("tumor_type", v)[0] == ["T1Gd"]
    assert p.task_channels("grade", v) == (["T1", "FLAIR", "T1Gd"], "")
    pred = p.predict_volume(v, tasks=["grade"])
    assert pred.tasks["grade"].sequences == TCGA_SEQUENCES
    assert pred.tasks["grade"].read_on == "T1 pre-contrast + FLAIR + T1 post-contrast"


def test_preference_order_and_fallbacks():
    sl = phantom(3, bright=(1,))
    p = predictor()
    assert p.task_channels("presence", volume_of(sl, {"t1post": sl, "t2": sl}))[0] == ["t2"]
    assert p.task_channels("tumor_type", volume_of(sl, {"flair": sl, "t1pre": sl}))[0] == ["t1pre"]
    assert p.task_channels("presence", volume_of(sl)) == (["image"], "")  # one channel: no note
    channels, why = p.task_channels("presence", volume_of(sl, {"t0": sl, "t1": sl}))
    assert channels == ["t0"] and "no channel is named" in why and "FLAIR" in why


def test_a_model_trained_on_one_named_sequence_prefers_it_then_the_task_order():
    sl = phantom(3)
    p = predictor(grey=("t1post",))
    assert p.task_channels("presence", volume_of(sl, {"flair": sl, "ce-T1": sl})) == (["ce-T1"], "")
    channels, why = p.task_channels("presence", volume_of(sl, {"t1pre": sl, "flair": sl}))
    assert channels == ["flair"] and "trained on T1 post-contrast" in why


def test_multi_sequence_model_without_its_sequences():
    sl = phantom(3)
    p = predictor()
    vol = volume_of(sl, {"flair": sl, "t2": sl})
    channels, why = p.task_channels("grade", vol, forced=False)
    assert channels is None and "missing t1pre, t1post" in why
    channels, why = p.task_channels("grade", vol, forced=True)
    assert channels == ["flair"] and "substitute inputs" in why


def test_one_sequence_copied_into_all_channels_still_runs(fixtures_dir, tmp_path):
    flair = np.asarray(Image.open(fixtures_dir / TCGA))[..., 1]
    path = tmp_path / "flair_only.png"
    Image.fromarray(np.stack([flair] * 3, -1)).save(path)
    v = load_volume(path, sequences=TCGA_SEQUENCES)
    always_tumour = predictor(presence_base=(-5.0, 5.0))
    pred = always_tumour.predict_volume(v, tasks=["presence", "tumor_type", "grade"])
    assert set(pred.tasks) == {"presence", "tumor_type", "grade"}
    assert all(r.answered for r in pred.tasks.values()), {t: r.status for t, r in pred.tasks.items()}
    assert pred.tasks["grade"].sequences == TCGA_SEQUENCES
    assert not any("colour" in r for r in pred.ood["reasons"])


@pytest.mark.parametrize(
    "name,canonical",
    [
        ("T1c", "t1post"),
        ("t1ce", "t1post"),
        ("T1Gd", "t1post"),
        ("ce-T1", "t1post"),
        ("T1+C", "t1post"),
        ("T1 post", "t1post"),
        ("T1", "t1pre"),
        ("t1w", "t1pre"),
        ("T1_pre", "t1pre"),
        ("FLAIR", "flair"),
        ("T2-FLAIR", "flair"),
        ("T2w", "t2"),
        ("t2", "t2"),
        ("grey", None),
        ("red", None),
        ("t0", None),
    ],
)
def test_canonical_sequence_names(name, canonical):
    assert canonical_sequence(name) == canonical


def test_find_channel_and_titles():
    assert find_channel(["T1", "FLAIR", "T1Gd"], "t1post") == "T1Gd"
    assert find_channel(["flair", "FLAIR"], "FLAIR") == "FLAIR"  # an exact name first
    assert find_channel(["grey"], "flair") is None and find_channel(["grey"], "grey") == "grey"
    assert sequence_title("t1ce") == "T1 post-contrast" and sequence_title("image") == "image"
