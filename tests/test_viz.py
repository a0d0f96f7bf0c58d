import base64
import io

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from core import viz


def _decode(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def test_slice_figure_image_aspect_and_crosshair():
    img = np.linspace(0, 1, 6 * 10, dtype=np.float32).reshape(6, 10)
    fig = viz.slice_figure(img, aspect=2.5, crosshair=(2, 7), title="Axial")
    assert isinstance(fig, go.Figure)
    (trace,) = fig.data
    assert trace.type == "image"
    png = _decode(trace.source)
    assert png.shape == (6, 10)                      # rows x cols preserved, grey PNG
    assert png[0, 0] == 0 and png[-1, -1] == 255
    assert fig.layout.yaxis.scaleanchor == "x"
    assert fig.layout.yaxis.scaleratio == pytest.approx(2.5)
    assert list(fig.layout.yaxis.range) == [5.5, -0.5]  # row 0 at the top
    assert list(fig.layout.xaxis.range) == [-0.5, 9.5]
    shapes = fig.layout.shapes
    assert len(shapes) == 2
    horizontal = [s for s in shapes if s.y0 == s.y1][0]
    vertical = [s for s in shapes if s.x0 == s.x1][0]
    assert horizontal.y0 == 2 and vertical.x0 == 7
    assert len(fig.to_json()) < 20_000                # light: a PNG, not a JSON matrix


def test_slice_figure_rgb_and_bad_aspect():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200
    fig = viz.slice_figure(rgb, aspect=float("nan"))
    assert _decode(fig.data[0].source).shape == (4, 5, 3)
    assert fig.layout.yaxis.scaleratio == 1.0
    assert not fig.layout.shapes
    with pytest.raises(ValueError):
        viz.slice_figure(np.zeros(5))


def test_overlay_range_shape_and_blend():
    base = np.full((8, 8), 0.5, np.float32)
    heat = np.zeros((4, 4), np.float32)
    heat[:2, :2] = 1.0                              # hot top-left quadrant, lower resolution
    out = viz.overlay(base, heat, cmap="jet", alpha=0.4)
    assert out.dtype == np.uint8 and out.shape == (8, 8, 3)
    hot, cold = out[0, 0].astype(int), out[7, 7].astype(int)
    assert hot[0] > hot[2]                           # jet(1) is red
    assert cold[2] > cold[0]                         # jet(0) is blue
    plain = viz.overlay(base, heat, alpha=0.0)
    assert (plain == 128).all()                      # alpha 0: the grey slice untouched
    full = viz.overlay(base, np.full((8, 8), np.nan), alpha=1.0)
    assert np.isfinite(full).all() and full.max() <= 255


def test_overlay_numpy_fallback_matches_jet_ends():
    assert viz._jet(np.array(0.0)).argmax() == 2
    assert viz._jet(np.array(1.0)).argmax() == 0


def test_to_uint8_clips_and_rounds():
    np.testing.assert_array_equal(viz.to_uint8(np.array([-1, 0, 0.5, 1, 2, np.nan])),
                                  [0, 0, 128, 255, 255, 0])
