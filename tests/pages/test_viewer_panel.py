"""The viewer panel (pages/viewer_panel.py) in AppTest: orientation letters and the convention, a
click in one plane moving the others, the distance measurement, thin-slab volumes.

AppTest cannot click a plotly chart: a click is fed through `apply_click` (what the chart's
on_select callback calls with the clicked pixel); tests/test_browser_e2e.py clicks for real."""

import json

import pytest
from streamlit.testing.v1 import AppTest

from core import preprocess, viz

SHAPE = (6, 8, 10)


def _script():
    import numpy as np
    import streamlit as st

    from core.io.volume import Volume
    from pages import viewer_panel

    spacing = st.session_state.get("_spacing", (2.0, 1.0, 1.0))
    shape = st.session_state.get("_shape", (6, 8, 10))
    a = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    volume = Volume(a, spacing, np.diag([*spacing[::-1], 1.0]), source_format=st.session_state.get("_format", "nifti"))
    for click in st.session_state.pop("_clicks", []):  # what a chart's on_select would do
        viewer_panel.apply_click(*click)
    st.session_state["_view"] = viewer_panel.render_viewer(volume, "v")


def _app(**state) -> AppTest:
    at = AppTest.from_function(_script, default_timeout=60)
    for k, v in state.items():
        at.session_state[k] = v
    return at.run()


def _figures(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _letters(fig: dict) -> dict:
    return {
        a["name"].split("-", 1)[1]: a["text"].strip("</b>")
        for a in fig["layout"].get("annotations", [])
        if a.get("name", "").startswith("orientation-")
    }


def _positions(at: AppTest) -> list[int]:
    return [at.slider(key=f"pos_{p}_v").value for p in preprocess.PLANES]


def test_every_plane_has_its_orientation_letters_and_the_convention_is_stated():
    at = _app()
    assert not at.exception
    figs = _figures(at)
    assert [_letters(f) for f in figs] == [
        {"left": "R", "right": "L", "top": "A", "bottom": "P"},
        {"left": "R", "right": "L", "top": "S", "bottom": "I"},
        {"left": "A", "right": "P", "top": "S", "bottom": "I"},
    ]
    assert viz.CONVENTIONS[viz.RADIOLOGICAL] in " ".join(c.value for c in at.caption)
    assert at.session_state["_view"]["convention"] == viz.RADIOLOGICAL

    at.toggle(key="view_neurological").set_value(True).run()
    assert not at.exception
    assert _letters(_figures(at)[0])["left"] == "L" and _letters(_figures(at)[2])["left"] == "A"
    assert viz.CONVENTIONS[viz.NEUROLOGICAL] in " ".join(c.value for c in at.caption)
    assert set(at.session_state["_view"]) >= {"channel", "position", "window", "convention"}


@pytest.mark.parametrize("convention", [viz.RADIOLOGICAL, viz.NEUROLOGICAL])
def test_a_click_in_one_plane_moves_the_others(convention):
    at = _app(view_neurological=convention == viz.NEUROLOGICAL)
    assert _positions(at) == [4, 5, 6]
    target = (3, 6, 1)  # a voxel (z, y, x) in the current axial slice
    width = SHAPE[2]
    pixel = viz.cross_in_convention(preprocess.crosshair(SHAPE, "axial", target), width, "axial", convention)
    at.session_state["_clicks"] = [("axial", "v", SHAPE, 3, convention, False, pixel)]
    at.run()
    assert not at.exception
    assert _positions(at) == [4, 7, 2]  # the axial slice stays, coronal y=6, sagittal x=1
    assert at.session_state["_view"]["position"] == (3, 6, 1)
    shapes = _figures(at)[0]["layout"]["shapes"]  # the axial crosshair follows to the clicked pixel
    assert {(s["y0"], s["x0"]) for s in shapes} >= {(pixel[0], -0.5), (-0.5, pixel[1])}


def test_measuring_two_points_gives_the_distance_in_millimetres():
    at = _app()
    at.toggle(key="measure_on_v").set_value(True).run()
    assert "click two points" in " ".join(c.value for c in at.caption)
    clicks = [
        ("coronal", "v", SHAPE, 4, viz.RADIOLOGICAL, True, (0, 0)),
        ("coronal", "v", SHAPE, 4, viz.RADIOLOGICAL, True, (3, 4)),
    ]
    at.session_state["_clicks"] = clicks[:1]
    at.run()
    assert "click the second point" in " ".join(m.value for m in at.markdown)
    assert _positions(at) == [4, 5, 6]  # measuring does not move the planes
    at.session_state["_clicks"] = clicks[1:]
    at.run()
    # coronal pixels are 2 mm (z) high and 1 mm (x) wide: rows 3 -> 6 mm, columns 4 -> 4 mm
    assert "**7.2 mm**" in " ".join(m.value for m in at.markdown)
    coronal = _figures(at)[1]
    assert any(a.get("name") == "measurement" and a["text"] == "7.2 mm" for a in coronal["layout"]["annotations"])
    at.button(key="measure_clear_v").click().run()
    assert "mm**" not in " ".join(m.value for m in at.markdown)


def test_thin_slab_volume_is_drawn_at_true_spacing_with_a_note():
    at = _app(_spacing=(6.0, 0.5, 0.5))
    assert not at.exception
    coronal = _figures(at)[1]
    assert coronal["layout"]["yaxis"]["scaleratio"] == pytest.approx(12.0)
    assert "Thick slices: 6 mm" in at.info[0].value
    assert not _app().info  # 2 x 1 x 1 mm: no note


def test_a_2d_picture_gets_one_view_without_letters():
    at = _app(_shape=(1, 12, 16), _spacing=(1.0, 1.0, 1.0), _format="image")
    assert not at.exception
    (fig,) = _figures(at)
    assert _letters(fig) == {}
    assert "records no orientation" in " ".join(c.value for c in at.caption)
