from types import SimpleNamespace

import numpy as np
import pytest
import torch

from core import preprocess as P
from core.io.volume import Volume

# RAS-canonical (z, y, x): z inferior->superior, y posterior->anterior, x patient left->right
NZ, NY, NX = 5, 7, 9


def _volume(a, spacing=(1.0, 1.0, 1.0)) -> Volume:
    return Volume(np.asarray(a, np.float32), spacing, np.diag([*spacing[::-1], 1.0]))


def _where(img, value):
    ((r, c),) = np.argwhere(img == value)
    return int(r), int(c)


def _probe(z, y, x):
    a = np.zeros((NZ, NY, NX), np.float32)
    a[z, y, x] = 1.0
    return _volume(a)


# In RAS+ the x axis points to the patient's Right: x = NX-1 is the patient's rightmost column,
# y = NY-1 the most anterior, z = NZ-1 the most superior.
RIGHT, LEFT = NX - 1, 0
ANTERIOR, POSTERIOR = NY - 1, 0
SUPERIOR, INFERIOR = NZ - 1, 0


def test_axial_radiological_orientation():
    s = P.slices(_probe(2, ANTERIOR, RIGHT), "axial", normalize=False)
    assert s.shape == (NZ, NY, NX)
    assert s.dtype == np.float32
    assert s[2].max() == 1 and s[1].max() == 0  # slice index = z voxel index
    row, col = _where(s[2], 1)
    assert col == 0  # patient's right on the viewer's LEFT
    assert row == 0  # anterior at the top
    row, col = _where(P.slices(_probe(2, POSTERIOR, LEFT), "axial", normalize=False)[2], 1)
    assert (row, col) == (NY - 1, NX - 1)


def test_coronal_orientation():
    s = P.slices(_probe(SUPERIOR, 3, RIGHT), "coronal", normalize=False)
    assert s.shape == (NY, NZ, NX)
    assert _where(s[3], 1) == (0, 0)  # superior at top, patient's right on viewer's left
    assert _where(P.slices(_probe(INFERIOR, 3, LEFT), "coronal", normalize=False)[3], 1) == (NZ - 1, NX - 1)


def test_sagittal_orientation():
    s = P.slices(_probe(SUPERIOR, ANTERIOR, 4), "sagittal", normalize=False)
    assert s.shape == (NX, NZ, NY)
    assert _where(s[4], 1) == (0, 0)  # superior at top, anterior on the left
    assert _where(P.slices(_probe(INFERIOR, POSTERIOR, 4), "sagittal", normalize=False)[4], 1) == (NZ - 1, NY - 1)


def test_2d_image_convention_round_trips():
    """core.io stores a picture as array[0] = img[::-1, ::-1]; axial slicing gives it back."""
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    v = _volume(img[::-1, ::-1][None])
    np.testing.assert_array_equal(P.slices(v, "axial", normalize=False)[0], img)


@pytest.mark.parametrize("plane", P.PLANES)
def test_crosshair_matches_displayed_voxel(plane):
    pos = (1, 5, 2)
    s = P.slices(_probe(*pos), plane, normalize=False)
    index = pos[P.PLANES.index(plane)]
    assert P.crosshair((NZ, NY, NX), plane, pos) == _where(s[index], 1)


def test_display_slice_equals_stack_and_clamps():
    rng = np.random.default_rng(0)
    a = rng.random((NZ, NY, NX)).astype(np.float32)
    for plane in P.PLANES:
        stack = P.slices(_volume(a), plane, normalize=False)
        np.testing.assert_array_equal(P.display_slice(a, plane, 2), stack[2])
        np.testing.assert_array_equal(P.display_slice(a, plane, 999), stack[-1])
        assert P.display_slice(a, plane, 0).flags["C_CONTIGUOUS"]


def test_plane_aspect_anisotropic():
    v = _volume(np.zeros((4, 6, 8)), spacing=(5.0, 1.0, 0.5))  # (z, y, x) mm
    assert P.plane_aspect(v, "axial") == pytest.approx(1.0 / 0.5)
    assert P.plane_aspect(v, "coronal") == pytest.approx(5.0 / 0.5)
    assert P.plane_aspect(v, "sagittal") == pytest.approx(5.0 / 1.0)
    assert P.plane_aspect(_volume(np.zeros((2, 2, 2)), spacing=(0.0, 1.0, 1.0)), "coronal") == 1.0
    with pytest.raises(ValueError):
        P.plane_aspect(v, "oblique")


def test_normalize_percentiles_ignore_background():
    a = np.zeros(10_000, np.float32)
    a[5000:] = np.linspace(1, 1000, 5000)  # foreground 1..1000, background zeros
    out = P.normalize_intensity(a, 0.5, 99.5)
    lo, hi = np.percentile(a[5000:], [0.5, 99.5])
    assert out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0
    assert out[:5000].max() == 0.0
    i = 7500
    assert out[i] == pytest.approx((a[i] - lo) / (hi - lo), rel=1e-5)
    assert (out[a >= hi] == 1.0).all()  # top 0.5 % clipped


def test_normalize_constant_nan_and_empty_images():
    assert not P.normalize_intensity(np.zeros((3, 3))).any()
    const = P.normalize_intensity(np.full((3, 3), 7.0))
    assert np.isfinite(const).all() and (const == 1.0).all()
    mask = np.array([[0, 3], [3, 0]], np.float32)
    np.testing.assert_array_equal(P.normalize_intensity(mask), mask / 3)
    weird = np.array([np.nan, np.inf, -np.inf, 1.0, 2.0, 3.0], np.float32)
    out = P.normalize_intensity(weird)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert out[0] == 0.0


def test_slices_normalize_over_whole_volume_and_channel():
    a = np.zeros((2, 4, 4), np.float32)
    a[0] = 1.0
    a[1] = 3.0
    flair = np.full((2, 4, 4), 5.0, np.float32)
    v = Volume(a, (1.0, 1.0, 1.0), np.eye(4), channels={"t1": a, "flair": flair})
    s = P.slices(v, "axial")
    assert s[0].max() < s[1].max()  # one scale for all slices, not per slice
    assert (P.slices(v, "axial", channel="flair") == 1.0).all()
    with pytest.raises(KeyError):
        P.slices(v, "axial", channel="t2")


def test_apply_window():
    img = np.array([0.0, 0.25, 0.5, 0.75, 1.0], np.float32)
    np.testing.assert_allclose(P.apply_window(img, 0.5, 0.5), [0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(P.apply_window(img, *P.WINDOW_PRESETS["full"]), img)
    assert np.isfinite(P.apply_window(img, 0.5, 0.0)).all()  # zero width: no divide by zero
    assert set(P.WINDOW_PRESETS) >= {"full", "brain", "contrast", "soft"}


def _spec(size=16, channels=3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)):
    return SimpleNamespace(input_size=size, in_channels=channels, mean=mean, std=std)


def test_model_input_shape_and_normalisation():
    x = np.full((2, 32, 32), 0.75, np.float32)
    t = P.model_input(x, _spec())
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    assert tuple(t.shape) == (2, 3, 16, 16)
    assert torch.allclose(t, torch.full_like(t, (0.75 - 0.5) / 0.25))


def test_model_input_per_channel_stats_and_multichannel_slices():
    x = np.stack([np.full((3, 8, 8), v, np.float32) for v in (0.2, 0.4, 0.6)], axis=1)  # (N, C, H, W)
    t = P.model_input(x, _spec(size=8, mean=(0.2, 0.4, 0.6), std=(0.1, 0.2, 0.3)))
    assert tuple(t.shape) == (3, 3, 8, 8)
    assert torch.allclose(t, torch.zeros_like(t), atol=1e-6)
    grey = P.model_input(x, _spec(size=8, channels=1, mean=(0.4,), std=(1.0,)))
    assert tuple(grey.shape) == (3, 1, 8, 8)
    with pytest.raises(ValueError):
        P.model_input(np.zeros((1, 2, 8, 8)), _spec(size=8))


def test_model_input_pads_non_square_keeping_shape():
    x = np.zeros((1, 8, 16), np.float32)
    x[0, :, :] = 1.0  # a 2:1 bright rectangle
    t = P.model_input(x, _spec(size=16, channels=1, mean=(0.0,), std=(1.0,)))
    assert tuple(t.shape) == (1, 1, 16, 16)
    col = t[0, 0, :, 8]
    assert col[0] == 0 and col[-1] == 0 and col[8] == 1  # padded top/bottom, not stretched
    assert torch.isfinite(t).all()


def test_model_input_grey_replicated_and_nan_free():
    x = np.random.default_rng(1).random((1, 20, 20)).astype(np.float32)
    x[0, 0, 0] = np.nan
    t = P.model_input(torch.from_numpy(x), _spec(size=10))
    assert torch.isfinite(t).all()
    assert torch.equal(t[:, 0], t[:, 1]) and torch.equal(t[:, 1], t[:, 2])
    single = P.model_input(x[0], _spec(size=10))
    assert tuple(single.shape) == (1, 3, 10, 10)
