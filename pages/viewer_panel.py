"""The three-plane viewer of the scan page (a panel, not a navigation page: app.py lists pages).

`render_viewer(volume, vkey, axial_overlay)` draws the planes with their sliders, window and channel
controls and returns the view state; figures come from `core.viz`.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import streamlit as st

from core import preprocess, viz
from core.inference.verdict import slice_label
from core.io.volume import Volume

NORM_KEY = "_scan_norm"  # session_state: normalised arrays of the current volume, per channel
ZOOMS = (1, 1.5, 2, 3, 4)


def normalized(volume: Volume, channel: str) -> np.ndarray:
    """The channel scaled to [0, 1] once per volume and channel (kept in session_state)."""
    key = (id(volume), channel)
    store = st.session_state.get(NORM_KEY)
    if store is None or store.get("volume") != id(volume):
        store = {"volume": id(volume)}
        st.session_state[NORM_KEY] = store
    if key not in store:
        store[key] = preprocess.normalize_intensity(volume.channels[channel])
    return store[key]


def _init_window() -> None:
    if "win_preset" not in st.session_state:
        st.session_state["win_preset"] = "full"
    if "win_center" not in st.session_state or "win_width" not in st.session_state:
        _apply_preset()


def _apply_preset() -> None:
    center, width = preprocess.WINDOW_PRESETS[st.session_state.get("win_preset", "full")]
    st.session_state["win_center"] = float(center)
    st.session_state["win_width"] = float(width)


def window_controls() -> tuple[float, float]:
    """Preset selectbox + center / width sliders over normalised intensities."""
    _init_window()
    c1, c2, c3 = st.columns([1, 2, 2])
    c1.selectbox("Window", list(preprocess.WINDOW_PRESETS), key="win_preset", on_change=_apply_preset)
    c2.slider("Level (center)", 0.0, 1.0, step=0.01, key="win_center")
    c3.slider("Width", 0.05, 2.0, step=0.01, key="win_width")
    return float(st.session_state["win_center"]), float(st.session_state["win_width"])


def channel_picker(volume: Volume) -> str:
    names = list(volume.channels)
    if len(names) <= 1:
        return names[0]
    if st.session_state.get("scan_channel") not in names:  # the channels changed (renamed)
        st.session_state.pop("scan_channel", None)
    active = volume.active_channel
    return st.radio(
        "Sequence / channel",
        names,
        index=names.index(active) if active in names else 0,
        horizontal=True,
        key="scan_channel",
    )


def axial_key(vkey: str) -> str:
    """session_state key of the axial slider (1-based), which the strip and the gallery move."""
    return plane_key("axial", vkey)


def plane_key(plane: str, vkey: str) -> str:
    """session_state key of a plane's slider (1-based slice number)."""
    return f"pos_{plane}_{vkey}"


def figure_key(plane: str, vkey: str) -> str:
    return f"fig_{plane}_{vkey}"


def measure_key(vkey: str) -> str:
    """session_state key of the measurement: {"plane", "index", "points": [(row, col), ...]}."""
    return f"_measure_{vkey}"


def view_options(vkey: str) -> tuple[str, bool, float]:
    """The display convention (radiological unless the neurological toggle is on), whether a click
    measures (instead of moving the other planes), and the zoom around the crosshair."""
    c1, c2, c3, c4 = st.columns([1.6, 1.1, 1, 1.2], vertical_alignment="center")
    neuro = c1.toggle(
        "Neurological convention",
        key="view_neurological",
        help="Off: radiological (the patient's right on the viewer's left, as most PACS "
        "viewers show it). On: the patient's right on the viewer's right.",
    )
    measuring = c2.toggle(
        "Measure (mm)",
        key=f"measure_on_{vkey}",
        help="Click two points on one plane: the distance between them in millimetres, from the voxel spacing.",
    )
    if c3.button("Clear measurement", key=f"measure_clear_{vkey}", disabled=measure_key(vkey) not in st.session_state):
        st.session_state.pop(measure_key(vkey), None)
    zoom = c4.select_slider(
        "Zoom",
        ZOOMS,
        key=f"zoom_{vkey}",
        format_func=lambda z: f"{z}×",
        help="Magnifies every plane around the crosshair; follows your clicks.",
    )
    return (viz.NEUROLOGICAL if neuro else viz.RADIOLOGICAL), bool(measuring), float(zoom)


def plane_clicked(
    plane: str, vkey: str, shape: tuple[int, int, int], index: int, convention: str, measuring: bool
) -> None:
    """on_select callback of a plane (runs before the rerun, so the sliders are created with the new
    values): the clicked voxel becomes the other planes' slices, or a point of the measurement."""
    pixel = viz.selected_pixel(st.session_state.get(figure_key(plane, vkey)))
    if pixel is not None:
        apply_click(plane, vkey, shape, index, convention, measuring, pixel)


def apply_click(
    plane: str,
    vkey: str,
    shape: tuple[int, int, int],
    index: int,
    convention: str,
    measuring: bool,
    pixel: tuple[int, int],
) -> None:
    """A click on `pixel` (row, col) of a drawn plane, as session_state changes."""
    if measuring:
        m = st.session_state.get(measure_key(vkey))
        if not m or m["plane"] != plane or m["index"] != index or len(m["points"]) >= 2:
            m = {"plane": plane, "index": index, "points": []}
        m["points"].append(pixel)
        st.session_state[measure_key(vkey)] = m
        return
    voxel = viz.voxel_at(shape, plane, index, pixel, convention)
    for other, i in zip(preprocess.PLANES, voxel):
        if other != plane:
            st.session_state[plane_key(other, vkey)] = i + 1


def measurement_text(volume: Volume, vkey: str) -> str | None:
    m = st.session_state.get(measure_key(vkey))
    if not m:
        return None
    if len(m["points"]) < 2:
        return f"Measuring on the {m['plane']} plane: click the second point."
    mm = viz.distance_mm(*m["points"], viz.plane_pixel_mm(volume.spacing, m["plane"]))
    return f"Distance on the {m['plane']} plane, slice {m['index'] + 1}: **{mm:.1f} mm**."


def render_viewer(volume: Volume, vkey: str = "v", axial_overlay=None, channel_data=None) -> dict:
    """Three linked planes with sliders, crosshairs and orientation letters; a click in one plane
    moves the others (or measures a distance). Returns the view state (channel, position (z, y, x),
    window, convention) so later sections (verdict, Grad-CAM) can follow the user's slice.

    axial_overlay(index, windowed (H, W) slice) -> (RGB uint8 image, caption) or None: drawn in
    place of the axial slice (the Grad-CAM heat map of the slice on screen).
    channel_data(channel) -> the channel scaled to [0, 1] (default: `normalized`); the scan page
    passes its Case's, so the scan is normalised once for the viewer and the models."""
    channel = channel_picker(volume)
    center, width = window_controls()
    convention, measuring, zoom = view_options(vkey)
    data = channel_data(channel) if channel_data else normalized(volume, channel)
    shape = data.shape
    planes = preprocess.PLANES if shape[0] > 1 else ("axial",)
    oriented = getattr(volume, "source_format", "") != "image"  # a 2D picture records no orientation
    for plane in preprocess.PLANES:  # sliders count from 1; start in the middle of the scan
        st.session_state.setdefault(plane_key(plane, vkey), preprocess.num_slices(shape, plane) // 2 + 1)
    cols = st.columns(len(planes))
    for col, plane in zip(cols, planes):
        with col:
            n = preprocess.num_slices(shape, plane)
            title = preprocess.plane_title(volume, plane)
            st.markdown(f"**{title}**")
            if len(planes) > 1 and n > 1:
                st.slider(f"{title} slice", 1, n, key=plane_key(plane, vkey), label_visibility="collapsed")
    position = tuple(
        int(np.clip(st.session_state[plane_key(p, vkey)] - 1, 0, preprocess.num_slices(shape, p) - 1))
        for p in preprocess.PLANES
    )  # voxel indices (z, y, x)
    measured = st.session_state.get(measure_key(vkey)) or {}
    for col, plane in zip(cols, planes):
        idx = position[preprocess.PLANES.index(plane)]
        img = preprocess.apply_window(preprocess.display_slice(data, plane, idx), center, width)
        note = None
        if plane == "axial" and axial_overlay is not None:
            with col:
                drawn = axial_overlay(idx, img)
            if drawn is not None:
                img, note = drawn
        img = viz.in_convention(img, plane, convention)
        others = [p for p in preprocess.PLANES if p != plane]
        cross = preprocess.crosshair(shape, plane, position) if len(planes) > 1 else None
        cross = viz.cross_in_convention(cross, img.shape[1], plane, convention)
        # horizontal line: the plane cutting rows; vertical: the plane cutting columns
        hplane = "coronal" if plane == "axial" else "axial"
        vplane = [p for p in others if p != hplane][0]
        here = measured.get("plane") == plane and measured.get("index") == idx
        fig = viz.slice_figure(
            img,
            crosshair=cross,
            crosshair_colors=(viz.CROSSHAIR_COLORS[hplane], viz.CROSSHAIR_COLORS[vplane]),
            height=340 if len(planes) > 1 else 520,
            letters=viz.edge_letters(plane, convention) if oriented else None,
            clickable=True,
            measure=measured.get("points", []) if here else (),
            pixel_mm=viz.plane_pixel_mm(volume.spacing, plane),
            uirevision=f"{vkey}-{plane}-{convention}",
            zoom=zoom,
        )
        with col:
            st.plotly_chart(
                fig,
                key=figure_key(plane, vkey),
                selection_mode="points",
                on_select=partial(plane_clicked, plane, vkey, shape, idx, convention, measuring),
                config={
                    "displayModeBar": "hover",
                    "displaylogo": False,
                    "modeBarButtonsToRemove": ["select2d", "lasso2d", "toImage"],
                },
            )
            n = preprocess.num_slices(shape, plane)
            st.caption(slice_label(idx, n) + (f" · {note}" if note else ""))
    hints = [
        viz.CONVENTIONS[convention] if oriented else "A 2D picture records no orientation: no letters.",
        "Measure: click two points on one plane." if measuring else "Click a plane to move the others there.",
        "Drag a box to zoom (pan and zoom out in the toolbar), double-click to reset.",
    ]
    st.caption(" ".join(hints))
    said = measurement_text(volume, vkey)
    if said:
        st.markdown(said)
    slab = viz.thick_slab_note(volume.spacing) if len(planes) > 1 else None
    if slab:
        st.info(slab, icon=":material/view_agenda:")
    return {"channel": channel, "position": position, "window": (center, width), "convention": convention}
