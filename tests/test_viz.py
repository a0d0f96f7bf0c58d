import base64
import io

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from core import preprocess, viz
from core.io.volume import Volume


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
    assert png.shape == (6, 10)  # rows x cols preserved, grey PNG
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
    assert len(fig.to_json()) < 20_000  # light: a PNG, not a JSON matrix


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
    heat[:2, :2] = 1.0  # hot top-left quadrant, lower resolution
    out = viz.overlay(base, heat, cmap="jet", alpha=0.4)
    assert out.dtype == np.uint8 and out.shape == (8, 8, 3)
    hot, cold = out[0, 0].astype(int), out[7, 7].astype(int)
    assert hot[0] > hot[2]  # jet(1) is red
    assert (cold == 128).all()  # no heat: the slice untouched, not tinted blue
    plain = viz.overlay(base, heat, alpha=0.0)
    assert (plain == 128).all()  # alpha 0: the grey slice untouched
    full = viz.overlay(base, np.full((8, 8), np.nan), alpha=1.0)
    assert np.isfinite(full).all() and full.max() <= 255


def test_overlay_numpy_fallback_matches_jet_ends():
    assert viz._jet(np.array(0.0)).argmax() == 2
    assert viz._jet(np.array(1.0)).argmax() == 0


def test_to_uint8_clips_and_rounds():
    np.testing.assert_array_equal(viz.to_uint8(np.array([-1, 0, 0.5, 1, 2, np.nan])), [0, 0, 128, 255, 255, 0])


def test_heat_map_leaves_low_values_transparent_and_rises_with_the_value():
    heat = np.array([0.0, 0.1, viz.HEAT_FLOOR, 0.5, 0.8, 1.0], np.float32)
    a = viz.heat_alpha(heat, alpha=0.6)
    assert a[0] == a[1] == a[2] == 0.0  # at or under the floor: not drawn
    assert 0 < a[3] < a[4] < a[5]  # opacity rises with the heat
    assert a[5] == pytest.approx(0.6)  # the peak gets the chosen opacity
    base = np.full((1, 6), 0.3, np.float32)
    out = viz.overlay(base, heat[None], cmap="hot", alpha=0.6)
    assert (out[0, :3] == viz.to_uint8(0.3)).all()  # cold pixels keep the grey slice exactly
    assert (out[0, 5] != out[0, 0]).any()


def _marked_volume() -> Volume:
    """(z, y, x) RAS volume (x grows towards the patient's right, y anterior, z superior) with one
    bright voxel on the patient's right, anterior and superior side, and anisotropic spacing."""
    a = np.zeros((10, 12, 14), np.float32)
    a[8, 10, 11] = 1.0
    return Volume(array=a, spacing=(3.0, 1.0, 0.5), affine=np.diag([0.5, 1.0, 3.0, 1.0]))


def _side(img: np.ndarray) -> tuple[str, str]:
    """Where the marker lies in a drawn slice: ('left'|'right', 'top'|'bottom')."""
    r, c = np.argwhere(img == img.max())[0]
    return ("left" if c < img.shape[1] / 2 else "right"), ("top" if r < img.shape[0] / 2 else "bottom")


@pytest.mark.parametrize("convention", [viz.RADIOLOGICAL, viz.NEUROLOGICAL])
@pytest.mark.parametrize(
    "plane, horizontal, vertical", [("axial", "R", "A"), ("coronal", "R", "S"), ("sagittal", "A", "S")]
)
def test_orientation_letters_name_the_side_the_marker_is_drawn_on(convention, plane, horizontal, vertical):
    volume = _marked_volume()
    index = {"axial": 8, "coronal": 10, "sagittal": 11}[plane]
    img = viz.in_convention(preprocess.display_slice(volume.array, plane, index), plane, convention)
    across, down = _side(img)
    letters = viz.edge_letters(plane, convention)
    assert letters[across] == horizontal and letters[down] == vertical
    opposite = {"R": "L", "A": "P", "S": "I"}
    assert letters["right" if across == "left" else "left"] == opposite[horizontal]
    assert letters["bottom" if down == "top" else "top"] == opposite[vertical]


def test_radiological_puts_the_patients_right_on_the_viewers_left_and_figures_carry_the_letters():
    assert viz.edge_letters("axial")["left"] == "R"
    assert viz.edge_letters("axial", viz.NEUROLOGICAL)["left"] == "L"
    assert viz.edge_letters("sagittal", viz.NEUROLOGICAL) == viz.edge_letters("sagittal")  # no R/L in it
    fig = viz.slice_figure(np.zeros((4, 6)), letters=viz.edge_letters("coronal"))
    shown = {a.name: a.text for a in fig.layout.annotations}
    assert shown == {
        "orientation-left": "<b>R</b>",
        "orientation-right": "<b>L</b>",
        "orientation-top": "<b>S</b>",
        "orientation-bottom": "<b>I</b>",
    }
    assert all(a.xref == "x domain" and a.yref == "y domain" for a in fig.layout.annotations)  # stay put when zoomed
    with pytest.raises(ValueError):
        viz.edge_letters("axial", "upside-down")


def test_true_spacing_aspect_and_thick_slab_note():
    spacing = (5.0, 0.9, 0.9)  # thick axial slices
    assert viz.plane_pixel_mm(spacing, "coronal") == (5.0, 0.9)
    fig = viz.slice_figure(np.zeros((20, 256)), pixel_mm=viz.plane_pixel_mm(spacing, "coronal"))
    assert fig.layout.yaxis.scaleratio == pytest.approx(5.0 / 0.9)
    note = viz.thick_slab_note(spacing)
    assert "5 mm" in note and "coronal and sagittal" in note and "5.6×" in note
    assert "axial and sagittal" in viz.thick_slab_note((1.0, 4.0, 1.0))  # a coronal slab
    assert viz.thick_slab_note((1.0, 1.0, 1.2)) is None
    assert viz.thick_slab_note((float("nan"), 1.0, 1.0)) is None


def test_distance_in_millimetres_uses_row_and_column_spacing():
    assert viz.distance_mm((0, 0), (3, 4), (1.0, 1.0)) == pytest.approx(5.0)
    assert viz.distance_mm((0, 0), (2, 0), (5.0, 0.9)) == pytest.approx(10.0)  # across thick slices
    assert viz.distance_mm((1, 1), (1, 11), (5.0, 0.5)) == pytest.approx(5.0)
    fig = viz.slice_figure(np.zeros((10, 20)), measure=[(0, 0), (3, 4)], pixel_mm=(2.0, 2.0))
    assert any(a.text == "10.0 mm" for a in fig.layout.annotations)
    assert any(s.type == "line" and (s.x0, s.y0, s.x1, s.y1) == (0, 0, 4, 3) for s in fig.layout.shapes)


@pytest.mark.parametrize("convention", [viz.RADIOLOGICAL, viz.NEUROLOGICAL])
def test_click_maps_back_to_the_voxel_the_crosshair_marks(convention):
    shape = (7, 9, 11)
    position = (5, 2, 8)
    for plane, index in zip(preprocess.PLANES, position):
        width = preprocess.display_slice(np.zeros(shape), plane, 0).shape[1]
        cross = viz.cross_in_convention(preprocess.crosshair(shape, plane, position), width, plane, convention)
        assert viz.voxel_at(shape, plane, index, cross, convention) == position
    assert viz.voxel_at(shape, "axial", 0, (-5, 99)) == (0, 8, 0)  # clipped into the volume


def test_clickable_figure_returns_the_clicked_pixel():
    fig = viz.slice_figure(np.zeros((300, 200)), clickable=True, uirevision="axial")
    grid = fig.data[1]
    assert grid.type == "scattergl" and grid.marker.opacity == 0
    assert len(grid.x) <= viz.CLICK_GRID**2 and max(grid.x) >= 190 and max(grid.y) >= 290
    assert fig.layout.clickmode == "event+select" and fig.layout.uirevision == "axial"
    assert len(fig.to_json()) < 120_000
    selection = {"selection": {"points": [{"x": 40, "y": 12, "curve_number": 1}]}}
    assert viz.selected_pixel(selection) == (12, 40)
    assert viz.selected_pixel({"selection": {"points": []}}) is None
    assert viz.selected_pixel(None) is None


def test_zoom_magnifies_around_the_crosshair_and_stays_inside_the_image():
    assert viz.zoom_window(100, 49.5, 1.0) == (-0.5, 99.5)
    assert viz.zoom_window(100, 50, 2.0) == (25.0, 75.0)
    assert viz.zoom_window(100, 2, 4.0) == (-0.5, 24.5)  # near an edge: shifted inside
    assert viz.zoom_window(100, 99, 4.0) == (74.5, 99.5)
    fig = viz.slice_figure(np.zeros((40, 100)), crosshair=(20, 80), zoom=2.0)
    assert list(fig.layout.xaxis.range) == [49.5, 99.5] and list(fig.layout.yaxis.range) == [30.0, 10.0]
