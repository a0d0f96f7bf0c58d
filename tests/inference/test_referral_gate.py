"""The referral rule (conformal risk control on feature-space familiarity) and the input gate."""

import numpy as np
import pytest

from core.inference import referral
from core.inference.feature_density import FeatureDensity, UnverifiedFile, load_density
from core.inference.gate import REFUSE, check_input, gate_slices
from core.research.ood_sets import all_ood_images


def _blobs(n=400, d=12, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    means = rng.normal(0, 3, (3, d))
    return np.exp(means[y] + rng.normal(0, 0.5, (n, d))) - 1, y  # positive, like post-ReLU features


def test_density_ranks_far_images_as_unfamiliar_and_round_trips():
    f, y = _blobs()
    density = FeatureDensity.fit(f, y)
    far = f[:20] * 50 + 30
    assert density.distance(far).min() > np.quantile(density.reference, 0.99)
    assert (density.percentile(far) == 1.0).all()
    assert 0.3 < np.median(density.percentile(_blobs(seed=0)[0])) <= 0.7
    again = FeatureDensity.from_state(density.state())
    np.testing.assert_allclose(again.distance(far), density.distance(far))


def test_a_density_file_that_does_not_match_its_card_is_refused(tmp_path):
    from types import SimpleNamespace

    import torch

    f, y = _blobs()
    torch.save(FeatureDensity.fit(f, y).state(), tmp_path / "feature_density.pt")
    loaded = SimpleNamespace(
        card={"feature_density": {"file": "feature_density.pt", "sha256": "0" * 64}}, path=tmp_path
    )
    with pytest.raises(UnverifiedFile):
        load_density(loaded)
    assert load_density(SimpleNamespace(card={}, path=tmp_path)) is None


def test_conformal_threshold_keeps_confident_wrong_answers_under_target():
    rng = np.random.default_rng(1)
    n = 2000
    pct = rng.random(n)
    correct = rng.random(n) > pct**3 * 0.6  # unfamiliar images are wrong more often
    margin = np.ones(n)
    q = referral.choose_threshold(pct[:1000], margin[:1000], correct[:1000], target=0.02)
    assert 0.0 < q < 1.0
    rule = referral.ReferralRule(q, 0.02)
    held = referral.selective_metrics(rule.answered(pct[1000:], margin[1000:]), correct[1000:])
    assert held["confident_wrong"] <= 0.03  # target 0.02, finite-sample slack
    assert held["accuracy_answered"] > correct[1000:].mean()
    q_wrong = referral.choose_threshold(pct, margin, np.zeros(n, bool), target=0.02)  # always wrong:
    assert (pct <= q_wrong).mean() <= 0.02  # answers <= target
    assert referral.choose_threshold(pct[:10], margin[:10], correct[:10], target=0.02) == 0.0  # too few to vouch


def test_rule_reasons_and_close_calls():
    rule = referral.ReferralRule(0.9)
    assert rule.reasons(0.5, 0.9) == []
    assert "less familiar" in rule.reasons(0.95, 0.9)[0]
    assert "close call" in rule.reasons(0.5, 0.1)[0]
    assert not rule.answered(np.array([0.5]), np.array([0.1]))[0]


def test_gate_refuses_on_header_pictures_or_features_and_passes_plain_mri():
    plain = {"is_ood": False, "reasons": []}
    field_map = {"acquisition": {"Modality": "MR", "ImageType": ["ORIGINAL", "PRIMARY", "FIELD_MAP"]}}
    r = check_input(field_map, plain, None, None)
    assert r.decision == REFUSE and any("field map" in why for why in r.reasons)
    assert check_input({}, {"is_ood": True, "reasons": ["colour image"]}, None, None).refused
    assert check_input({}, plain, 40.0, 28.0).refused
    assert not check_input(
        {"acquisition": {"Modality": "MR", "ImageType": ["ORIGINAL", "PRIMARY", "M"]}}, plain, 10.0, 28.0
    ).refused


def test_gate_reads_at_most_sixteen_informative_slices():
    informative = np.zeros(155, bool)
    informative[20:140] = True
    idx = gate_slices(informative)
    assert len(idx) == 16 and informative[idx].all() and idx[0] == 20 and idx[-1] == 139
    assert len(gate_slices(np.zeros(5, bool))) == 0


def test_out_of_distribution_set_is_assembled_from_files_at_hand():
    items = dict(all_ood_images())
    kinds = {k.split(":")[0] for k in items}
    assert {"dicom", "epi", "photo", "generated"} <= kinds
    assert len(items) >= 30
    assert all(0.0 <= v.min() and v.max() <= 1.0 and v.ndim == 2 for v in items.values())
