"""The heat maps of the scan page (a panel, not a navigation page: app.py lists pages): the controls,
the overlay on the viewer's axial slice and the key-slice gallery. Heat maps come from
`core.case.Case.heatmap` (cached in the case), only for the slice on screen and the key slices.
"""

from __future__ import annotations

import logging

import numpy as np
import streamlit as st

from core import explain, preprocess, viz
from core.case import Case
from core.inference.verdict import slice_label
from core.tasks import class_title, task_title
from pages.common import first_line
from pages.viewer_panel import axial_key

log = logging.getLogger("neurograde.pages.scan")

COLOR_MAPS = ("jet", "turbo", "inferno", "viridis", "hot")


def cam_controls(case: Case, case_key: str) -> dict:
    """Method, task, target class (default: the verdict), colour map, opacity."""
    tasks = case.explainable_tasks
    if not tasks:
        return {"on": False}
    methods = list(explain.METHODS)
    st.session_state.setdefault("cam_method", explain.DEFAULT_METHOD)
    st.session_state.setdefault("cam_cmap", COLOR_MAPS[0])
    st.session_state.setdefault("cam_alpha", 0.4)
    st.session_state.setdefault("cam_on", True)
    if st.session_state.get("cam_task") not in tasks:
        st.session_state["cam_task"] = case.explained_task
    c0, c1, c2, c3, c4, c5 = st.columns([1.1, 1.2, 1.2, 1.3, 0.9, 1.1], vertical_alignment="bottom")
    c0.toggle("Heat map", key="cam_on", help="Grad-CAM family overlay on the axial slice on screen")
    c1.selectbox(
        "Method",
        methods,
        key="cam_method",
        format_func=lambda m: explain.METHODS[m].label + (" (slow)" if explain.METHODS[m].slow else ""),
        help="; ".join(f"{m.label}: {m.note}" for m in explain.METHODS.values()),
    )
    task = c2.selectbox("Explain", tasks, key="cam_task", format_func=task_title)
    verdict = case.prediction.tasks[task].label
    classes = case.classes(task)
    class_key = f"cam_class_{task}_{case_key}"
    if st.session_state.get(class_key) not in classes:
        st.session_state[class_key] = verdict if verdict in classes else classes[0]
    target = c3.selectbox(
        "Target class",
        classes,
        key=class_key,
        format_func=lambda c: class_title(c) + (" (verdict)" if c == verdict else ""),
    )
    c4.selectbox("Colours", COLOR_MAPS, key="cam_cmap")
    c5.slider("Opacity", 0.0, 1.0, step=0.05, key="cam_alpha")
    method = explain.METHODS[st.session_state["cam_method"]]
    if method.slow and st.session_state["cam_on"]:
        st.warning(
            f"{method.label} is slow: {method.note}. The key-slice gallery and the report keep Grad-CAM.",
            icon=":material/hourglass_top:",
        )
    return {
        "on": bool(st.session_state["cam_on"]),
        "method": st.session_state["cam_method"],
        "task": task,
        "class_index": classes.index(target),
        "class_name": target,
        "cmap": st.session_state["cam_cmap"],
        "alpha": float(st.session_state["cam_alpha"]),
    }


def axial_overlay(case: Case, settings: dict):
    """The viewer's axial overlay: the heat map of the slice on screen, computed on demand."""
    if not settings.get("on"):
        return None

    def draw(index: int, img: np.ndarray):
        label = explain.METHODS[settings["method"]].label
        try:
            with st.spinner(f"{label} for slice {index + 1}..."):
                res = case.heatmap(settings["task"], index, settings["class_index"], settings["method"])
        except Exception as exc:  # noqa: BLE001 - the viewer still shows the slice
            log.exception("CAM failed for slice %s", index)
            st.error(f"Heat map unavailable: {first_line(exc)}", icon=":material/error:")
            return None
        rgb = viz.overlay(img, res.heatmap, settings["cmap"], settings["alpha"])
        took = "cached" if res.cached else f"{res.ms:.0f} ms"
        return rgb, f"{label} for {class_title(res.class_name)} ({took})"

    return draw


def gallery_settings(settings: dict) -> dict:
    """The gallery and the report use the chosen method unless it is slow (then Grad-CAM)."""
    if explain.METHODS[settings["method"]].slow:
        return {**settings, "method": explain.DEFAULT_METHOD}
    return settings


def _goto(key: str, value: int) -> None:
    st.session_state[key] = int(value)


def render_key_slices(case: Case, view: dict, vkey: str, settings: dict) -> dict:
    """The key slices (most tumour-like) with their heat maps; returns {index: CamResult} (what
    the report draws)."""
    pred = case.prediction
    if not pred.key_slices or not settings.get("task"):
        return {}
    gs = gallery_settings(settings)
    cams = case.key_slice_heatmaps(gs["task"], gs["class_index"], gs["method"])
    if len(pred.slices) <= 1:
        return cams  # a single image: the viewer already shows it
    st.markdown("**Key slices**")
    st.caption(
        f"The slices with the highest P(tumour), with the {explain.METHODS[gs['method']].label} "
        f"heat map for {class_title(gs['class_name'])}."
    )
    data = case.normalized(view["channel"])
    center, width = view["window"]
    cols = st.columns(max(3, len(pred.key_slices)))
    for col, k in zip(cols, pred.key_slices):
        img = preprocess.apply_window(preprocess.display_slice(data, "axial", k), center, width)
        rgb = viz.overlay(img, cams[k].heatmap, gs["cmap"], gs["alpha"]) if settings.get("on") else img
        p = pred.slices[k].get("presence")
        label = slice_label(k, len(pred.slices))
        with col:
            st.image(
                rgb,
                caption=label + (f" · P(tumour) {p:.2f}" if p is not None else ""),
                width="stretch",
                clamp=True,
                alt=f"Grad-CAM heat map, key {label}",
            )
            st.button(
                "Show in viewer",
                key=f"goto_{vkey}_{k}",
                icon=":material/center_focus_strong:",
                on_click=_goto,
                args=(axial_key(vkey), k + 1),
                width="stretch",
            )
    return cams
