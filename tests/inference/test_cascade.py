"""Predictor: batched inference, cascade on stub models, uncertainty and refer triggers, OOD."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch
from inference_helpers import (
    GRADE_CLASSES,
    PRESENCE_CLASSES,
    TYPE_CLASSES,
    phantom,
    stub_loaded,
    tiny_loaded,
    volume_of,
)

from core import inference as inf
from core.inference import NO_TUMOUR_VERDICT, Predictor, runtime

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_batch_size_does_not_change_results(device):
    vol = volume_of(phantom(7, bright=(3,)))
    outs = []
    for bs in (1, 3, 64):
        p = Predictor(
            {
                "presence": tiny_loaded("presence", PRESENCE_CLASSES, seed=1),
                "tumor_type": tiny_loaded("tumor_type", TYPE_CLASSES, seed=2),
            },
            device=device,
            precision="fp32",
            batch_size=bs,
        )
        outs.append(p.predict_volume(vol, tasks=["presence", "tumor_type"], every_slice=True))
    a = np.array([[s["presence"]] + s["tumor_type"] for s in outs[0].slices])
    for o in outs[1:]:
        b = np.array([[s["presence"]] + s["tumor_type"] for s in o.slices])
        np.testing.assert_allclose(a, b, atol=1e-4)
    pred = outs[0]
    assert pred.n_slices == 7 and len(pred.slices) == 7
    assert set(pred.tasks) == {"presence", "tumor_type"}
    assert pred.model_versions == {"presence": "presence@t1", "tumor_type": "tumor_type@t1"}
    assert 1 <= len(pred.key_slices) <= 3 and all(0 <= i < 7 for i in pred.key_slices)
    assert {"presence", "tumor_type", "total"} <= set(pred.timings_ms)
    for r in pred.tasks.values():
        assert abs(sum(r.probabilities) - 1) < 1e-6 and r.label in r.classes
        assert {"entropy", "entropy_norm", "margin"} <= set(r.uncertainty)


def test_bf16_agrees_with_fp32():
    vol = volume_of(phantom(5, bright=(2,)))
    fp = Predictor({"tumor_type": tiny_loaded("tumor_type", TYPE_CLASSES, seed=2)}, device="cpu", precision="fp32")
    bf = Predictor({"tumor_type": tiny_loaded("tumor_type", TYPE_CLASSES, seed=2)}, device="cpu", precision="bf16")
    assert bf.precision["tumor_type"] == "bf16"
    assert next(bf.model("tumor_type").model.parameters()).dtype == torch.bfloat16
    a = np.array([s["tumor_type"] for s in fp.predict_volume(vol, every_slice=True).slices])
    b = np.array([s["tumor_type"] for s in bf.predict_volume(vol, every_slice=True).slices])
    np.testing.assert_allclose(a, b, atol=0.05)
    agree = bf.model("tumor_type").agreement()
    assert agree["max_abs_diff"] < 0.05


def test_auto_precision_falls_back_when_fast_path_disagrees(monkeypatch):
    monkeypatch.setattr(runtime, "_bf16_cpu_ok", lambda: True)
    monkeypatch.setattr(runtime, "AGREEMENT_TOLERANCE", -1.0)  # nothing can agree
    p = Predictor({"tumor_type": tiny_loaded("tumor_type", TYPE_CLASSES)}, device="cpu", precision="auto")
    assert p.precision["tumor_type"] == "fp32"
    assert any("disagreed" in n for n in p.notes)


def _stubs(presence_slope=11.5, type_base=(0.0, 0.0, 0.0), type_slope=(8.0, 0.0, 0.0), grade=True):
    models = {
        "presence": stub_loaded("presence", PRESENCE_CLASSES, [2.0, -2.0], [0.0, presence_slope]),
        "tumor_type": stub_loaded("tumor_type", TYPE_CLASSES, list(type_base), list(type_slope)),
    }
    if grade:
        models["grade"] = stub_loaded(
            "grade", GRADE_CLASSES, [3.0, 0.0], [0.0, 0.0], sequences=["t1pre", "flair", "t1post"]
        )
    return Predictor(models, device="cpu", precision="fp32")


def test_cascade_no_relevant_slice_gives_no_tumour_verdict():
    p = _stubs()
    pred = p.predict_volume(volume_of(phantom(5)))  # no bright slice: P(tumour) low everywhere
    assert all(s["presence"] < 0.5 for s in pred.slices)
    assert pred.verdict == NO_TUMOUR_VERDICT and pred.status in ("ok", "refer")
    assert pred.tasks["presence"].label == "no_tumor"
    assert set(pred.tasks) == {"presence"}  # the cascade stops: type and grade not run
    assert all("tumor_type" not in s for s in pred.slices)


def test_type_and_grade_asked_for_without_a_tumour_do_not_apply():
    """Forced with tasks=, they run, but never answer "ok" beside a no-tumour verdict."""
    sl = phantom(5)
    pred = _stubs().predict_volume(
        volume_of(sl, channels={"t1pre": sl, "flair": sl, "t1post": sl}), tasks=["presence", "tumor_type", "grade"]
    )
    assert pred.verdict == NO_TUMOUR_VERDICT
    assert pred.tasks["presence"].answered
    for task in ("tumor_type", "grade"):
        res = pred.tasks[task]
        assert res.status == "not_applicable" and res.note == NO_TUMOUR_VERDICT and not res.refer
        assert json.loads(pred.to_json())["tasks"][task]["status"] == "not_applicable"


def test_cascade_weights_type_by_presence():
    p = _stubs()
    sl = phantom(9, bright=(4,))
    pred = p.predict_volume(volume_of(sl))
    assert pred.slices[4]["presence"] > 0.5 and pred.tasks["presence"].label == "tumor"
    assert 4 in pred.key_slices
    # the volume's type equals the one relevant slice's probabilities (weights zero elsewhere)
    np.testing.assert_allclose(pred.tasks["tumor_type"].probabilities, pred.slices[4]["tumor_type"], atol=1e-9)
    assert pred.tasks["tumor_type"].n_slices_used == 1
    # only that slice was read by the type model; reading every slice gives the same verdict
    assert [i for i, s in enumerate(pred.slices) if s["tumor_type"] is not None] == [4]
    full = p.predict_volume(volume_of(sl), every_slice=True)
    assert all(s["tumor_type"] is not None for s in full.slices)
    np.testing.assert_allclose(
        full.tasks["tumor_type"].probabilities, pred.tasks["tumor_type"].probabilities, atol=1e-9
    )
    uniform = np.mean([s["tumor_type"] for s in full.slices], axis=0)
    assert pred.tasks["tumor_type"].probabilities[0] > uniform[0] + 0.05


def test_cascade_reads_every_slice_when_none_is_relevant():
    pred = _stubs().predict_volume(volume_of(phantom(5)), tasks=["presence", "tumor_type"])
    assert all(s["presence"] < 0.5 for s in pred.slices)
    assert all(s["tumor_type"] is not None for s in pred.slices)
    assert pred.tasks["tumor_type"].n_slices_used == 5


def test_grade_runs_for_glioma_with_sequences_and_is_skipped_without():
    p = _stubs()
    sl = phantom(5, bright=(2,))
    with_seq = volume_of(sl, channels={"t1pre": sl, "flair": sl, "t1post": sl})
    pred = p.predict_volume(with_seq)
    assert pred.tasks["tumor_type"].label == "glioma"
    assert pred.tasks["grade"].label == "G2" and pred.model_versions["grade"] == "grade@stub"
    assert pred.verdict == "glioma (G2)"
    pred2 = p.predict_volume(volume_of(sl))  # no t1pre/flair/t1post channels
    assert "grade" not in pred2.tasks
    assert any("grade needs sequences" in n for n in pred2.notes)
    forced = p.predict_volume(volume_of(sl), tasks=["grade"])  # asked explicitly: runs, flagged
    assert set(forced.tasks) == {"grade"}
    assert forced.tasks["grade"].refer and any("substitute" in r for r in forced.tasks["grade"].refer_reasons)


def test_grade_not_run_when_type_is_not_glioma():
    p = _stubs(type_slope=(0.0, 8.0, 0.0))
    sl = phantom(5, bright=(2,))
    pred = p.predict_volume(volume_of(sl, channels={"t1pre": sl, "flair": sl, "t1post": sl}))
    assert pred.tasks["tumor_type"].label == "meningioma" and "grade" not in pred.tasks


def test_refer_on_high_entropy_and_not_on_confident():
    confident = _stubs(type_base=(6.0, 0.0, 0.0), type_slope=(0.0, 0.0, 0.0), grade=False)
    pred = confident.predict_volume(volume_of(phantom(5, bright=(1, 2, 3))))
    assert not pred.ood["is_ood"], pred.ood
    assert not pred.tasks["tumor_type"].refer
    flat = _stubs(type_base=(0.0, 0.0, 0.0), type_slope=(0.0, 0.0, 0.0), grade=False)
    pred = flat.predict_volume(volume_of(phantom(5, bright=(1, 2, 3))))
    t = pred.tasks["tumor_type"]
    assert t.refer and pred.refer
    assert any("entropy" in r for r in t.refer_reasons) and any("margin" in r for r in t.refer_reasons)
    assert t.uncertainty["entropy_norm"] > 0.99


def test_mc_dropout_gives_bald():
    p = Predictor({"tumor_type": tiny_loaded("tumor_type", TYPE_CLASSES)}, device="cpu", precision="fp32")
    pred = p.predict_volume(volume_of(phantom(4)), mc_passes=4)
    u = pred.tasks["tumor_type"].uncertainty
    assert "bald" in u and u["bald"] >= 0
    # dropout is back in eval mode afterwards: deterministic again
    a = p.predict_slices("tumor_type", phantom(2))
    b = p.predict_slices("tumor_type", phantom(2))
    np.testing.assert_array_equal(a, b)


def _ood_volume(kind: str):

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:96] / 95.0
    if kind == "noise":
        return volume_of(rng.random((1, 96, 96)).astype(np.float32))
    if kind == "gradient":
        return volume_of(((xx + yy) / 2)[None].astype(np.float32))
    # a natural-looking synthetic RGB picture: sky, sun, hills
    r = np.clip(0.3 + 0.5 * yy + 0.6 * (((yy - 0.25) ** 2 + (xx - 0.7) ** 2) < 0.01), 0, 1)
    g = np.clip(0.5 + 0.3 * np.sin(xx * 9) * (yy > 0.6), 0, 1)
    b = np.clip(0.9 - 0.7 * yy, 0, 1)
    grey = 0.299 * r + 0.587 * g + 0.114 * b
    ch = {"grey": grey[None], "red": r[None], "green": g[None], "blue": b[None]}
    return volume_of(grey[None].astype(np.float32), channels={k: v.astype(np.float32) for k, v in ch.items()})


@pytest.mark.parametrize("kind", ["noise", "gradient", "natural_rgb"])
def test_ood_inputs_are_not_assessed(kind):
    """The input gate refuses them: no task answers, every one says why (never a tumour type)."""
    p = _stubs(type_base=(6.0, 0.0, 0.0), type_slope=(0.0, 0.0, 0.0), grade=False)
    pred = p.predict_volume(_ood_volume(kind))
    assert pred.ood["is_ood"] and pred.ood["reasons"], pred.ood
    assert pred.status == "cannot_assess" and pred.refer
    assert all(r.status == "cannot_assess" and r.probabilities == [] for r in pred.tasks.values())
    assert all("the input was refused" in r for r in pred.refer_reasons)


def test_ct_dicom_is_referred():
    pydicom_data = pytest.importorskip("pydicom.data")
    from core.io import load_volume

    vol = load_volume(pydicom_data.get_testdata_file("CT_small.dcm"), allow_ct=True)
    assert vol.modality == "CT"
    p = _stubs(type_base=(6.0, 0.0, 0.0), type_slope=(0.0, 0.0, 0.0), grade=False)
    pred = p.predict_volume(vol)
    assert pred.ood["is_ood"] and any("CT" in r for r in pred.ood["reasons"])
    assert pred.refer


def test_phantom_and_fixture_images_are_not_ood(fixtures_dir):
    from core.io import load_volume
    from core.preprocess import slices

    assert not inf.image_ood(phantom(3))["is_ood"]
    for name in ("figshare_glioma_209.jpg", "figshare_meningioma_1.jpg", "tcia_btp_PGBM-010_post_t1post.nii.gz"):
        path = fixtures_dir / name
        if path.exists():
            vol = load_volume(path)
            assert not inf.image_ood(slices(vol), vol)["is_ood"], name
    path = fixtures_dir / "tcga_lgg_CS_4941_013.jpg"
    if path.exists():
        vol = load_volume(path, sequences=["t1pre", "flair", "t1post"])
        assert not inf.image_ood(slices(vol), vol)["is_ood"]


def test_to_json_schema(tiny_predictor):
    pred = tiny_predictor.predict_volume(volume_of(phantom(3)), tasks=["presence", "tumor_type", "grade"])
    d = json.loads(pred.to_json())
    for t in ("presence", "tumor_type", "grade"):
        assert {"classes", "probabilities", "label", "uncertainty", "refer", "refer_reasons"} <= set(d["tasks"][t])
    assert len(d["slices"]) == 3 and "presence" in d["slices"][0] and "tumor_type" in d["slices"][0]
    assert set(d["model_versions"]) == {"presence", "tumor_type", "grade"}
    assert "total" in d["timings_ms"]


def test_from_active_cannot_assess_tasks_without_checkpoint():
    from core.zoo import save_checkpoint, set_active
    from model_zoo import create

    save_checkpoint(
        create("vgg19_slim", 2),
        {"architecture": "vgg19_slim", "classes": PRESENCE_CLASSES, "input": {"size": 32}},
        "presence",
        "u1",
    )
    set_active("presence", "u1")  # user versions are active only once promoted
    p = Predictor.from_active(
        tasks=["presence"], overrides={"tumor_type": "tumor_type@nope"}, device="cpu", precision="fp32"
    )
    assert p.tasks == ["presence"] and p.model_versions == {"presence": "presence@u1"}
    assert p.unavailable["tumor_type"][0] == "tumor_type@nope"
    assert "no model" in p.unavailable["tumor_type"][1] and "tumor_type@nope" in p.unavailable["tumor_type"][1]


def test_predictor_is_thread_safe(tiny_predictor):
    from core import explain

    vol = volume_of(phantom(4, bright=(1,)))
    run = lambda: tiny_predictor.predict_volume(vol, tasks=["presence", "tumor_type"])  # noqa: E731
    ref = run()
    tm = tiny_predictor.model("tumor_type")
    hooks = explain.hook_count(tm.model)
    errors, results = [], []

    def work(i):
        try:
            if i % 2:
                results.append(run())
            else:
                explain.cam(tiny_predictor, phantom(1, seed=i)[0], "gradcam", use_cache=False)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert explain.hook_count(tm.model) == hooks
    for r in results:
        np.testing.assert_allclose(
            r.tasks["tumor_type"].probabilities, ref.tasks["tumor_type"].probabilities, atol=1e-6
        )


def test_folding_batchnorm_keeps_the_outputs():
    import torch

    from core.inference import fold_batchnorm
    from model_zoo import create

    torch.manual_seed(0)
    for arch in ("vgg19_slim", "resnet18"):
        model = create(arch, 3).eval()
        for m in model.modules():  # non-trivial running statistics
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            ref = model(x)
            folded = fold_batchnorm(model)
            n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
            torch.testing.assert_close(folded(x), ref, rtol=1e-4, atol=1e-4)
        assert n_bn < sum(isinstance(m, torch.nn.BatchNorm2d) for m in create(arch, 3).modules())


def test_flip_tta_runs_when_the_card_was_measured_with_it():
    """The app must deliver what the card measured: flip-averaged logits when its recipe says tta."""
    from core.inference import TaskModel
    from core.preprocess import model_input

    plain = tiny_loaded("tumor_type", TYPE_CLASSES, seed=2)
    tta = tiny_loaded("tumor_type", TYPE_CLASSES, seed=2)
    tta.card = {**tta.card, "recipe": {"tta": True}}
    a, b = TaskModel(plain, "cpu", precision="fp32"), TaskModel(tta, "cpu", precision="fp32")
    assert (a.tta_flip, b.tta_flip) == (False, True)
    x = model_input(phantom(3, bright=(1,)), a.spec)
    flipped = torch.flip(x, dims=[3])
    np.testing.assert_allclose(b.logits(x), (a.logits(x) + a.logits(flipped)) / 2, atol=1e-5)
    np.testing.assert_allclose(b.logits(x), b.logits(flipped), atol=1e-5)  # mirror-invariant
    assert not np.allclose(a.logits(x), a.logits(flipped), atol=1e-5)


def test_axial_slices_given_by_the_caller_are_the_ones_read():
    """A Case computes the display slices once and hands them over; the cascade reads those."""
    from core.preprocess import slices

    p = _stubs(grade=False)
    vol = volume_of(phantom(9, bright=(4,)))
    own = p.predict_volume(vol)
    given = p.predict_volume(vol, axial=slices(vol, "axial"))
    assert given.verdict == own.verdict != NO_TUMOUR_VERDICT
    np.testing.assert_allclose(given.tasks["tumor_type"].probabilities, own.tasks["tumor_type"].probabilities)
    dimmed = slices(vol, "axial").copy()
    dimmed[4] = dimmed[3]  # the caller's slices have no bright slice: no tumour
    assert p.predict_volume(vol, axial=dimmed).verdict == NO_TUMOUR_VERDICT


def test_precision_lists_the_models_that_ran():
    p = _stubs(grade=False)
    assert p.predict_volume(volume_of(phantom(9, bright=(4,)))).precision == {"presence": "fp32", "tumor_type": "fp32"}
    assert p.predict_volume(volume_of(phantom(5))).precision == {"presence": "fp32"}  # no tumour: type not run
