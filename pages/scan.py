"""Scan: open a scan -> verdict -> three-plane viewer with heat maps -> report -> review queue.

Thin page: it holds one `core.case.Case` per opened scan (`pages.scan_sources`: an upload today,
kept in st.session_state by the upload's key) and draws it. The case computes, once each: the
display slices, the prediction (per set of model versions, so a promotion is picked up on the next
rerun), the heat maps (only for the slice on screen and the key slices) and the report. The
panels: `verdict_panel` (verdict card, slice strip), `viewer_panel` (three planes),
`heatmap_panel` (heat-map controls, overlay, key-slice gallery). Models come from
`pages.common.get_predictor` (built at app start).
"""

from __future__ import annotations

import streamlit as st

from core.case import Case
from core.io.volume import Volume
from core.jsonable import jsonable
from core.markup import text
from pages.common import current_user, get_predictor, get_repo, guarded, role_note
from pages.heatmap_panel import axial_overlay, cam_controls, render_key_slices
from pages.pacs_source import dicom_download, open_from_pacs, render_send_to_pacs
from pages.scan_sources import UPLOAD_HELP, Opened, open_upload, sequence_names
from pages.verdict_panel import DISCLAIMER, render_slice_strip, render_verdict
from pages.viewer_panel import render_viewer

SEND_NOTE = "Stores the de-identified slices and the model's outputs; each slice joins the review queue of every task."


# ---------------------------------------------------------------------------------- sections
def render_summary(volume: Volume) -> None:
    sz, sy, sx = volume.spacing
    st.caption(
        f"{' × '.join(str(n) for n in volume.shape)} voxels (z × y × x) · "
        f"{sz:.3g} × {sy:.3g} × {sx:.3g} mm · {volume.modality} · {volume.source_format}"
    )


def render_warnings(volume: Volume) -> None:
    for message in volume.warnings:
        st.warning(text(message, None), icon=":material/warning:")  # may quote the file


def render_metadata(volume: Volume) -> None:
    sz, sy, sx = volume.spacing
    with st.expander("Scan details (de-identified)", expanded=False):
        st.markdown(
            f"- **Shape** (z, y, x): {' × '.join(str(s) for s in volume.shape)}\n"
            f"- **Voxel spacing** (mm): {sz:.3g} × {sy:.3g} × {sx:.3g}\n"
            f"- **Modality**: {volume.modality}\n"
            f"- **Format**: {volume.source_format}\n"
            f"- **Channels**: {', '.join(volume.channels)}"
        )
        if volume.meta:
            st.json(jsonable(dict(volume.meta)), expanded=False)


def render_no_models() -> None:
    st.subheader("Verdict")
    st.info(
        "No model is installed yet: the viewer works, the verdict needs the tumour presence, "
        "type and grade models (`python -m core zoo list`; train or install them on the Models "
        "page).",
        icon=":material/schedule:",
    )


DICOM_HELP = (
    "A DICOM structured report and the key slices with their heat maps (Secondary Capture), in the "
    "scan's own study when it came as DICOM, else in a new anonymous study."
)


def render_downloads(case: Case, heatmaps: dict, key: str) -> None:
    """PDF case report (key slices with heat maps, probabilities, uncertainty, model cards,
    intended use), the JSON export and the DICOM results (built when clicked). File names carry the
    case key, never the upload's name."""
    with st.spinner("Writing the case report..."):
        pdf = case.report_pdf(heatmaps)
    st.markdown("**Report**")
    downloads = (
        ("PDF case report", pdf, "pdf", "application/pdf", "picture_as_pdf", None),
        ("JSON export", case.report_json(), "json", "application/json", "data_object", None),
        (
            "DICOM SR + key images",
            dicom_download(case, heatmaps),
            "dicom.zip",
            "application/zip",
            "folder_zip",
            DICOM_HELP,
        ),
    )
    for column, (label, data, suffix, mime, icon, note) in zip(st.columns(4), downloads):
        column.download_button(
            label,
            data,
            file_name=f"neurograde_{key[:12]}.{suffix}",
            mime=mime,
            icon=f":material/{icon}:",
            key=f"dl_{suffix.split('.')[0]}",
            on_click="ignore",
            width="stretch",
            help=note,
        )


def render_send_to_review(case: Case) -> None:
    """Store the de-identified case with its per-slice predictions in the review queue."""
    if case.review_case_id is None:
        user = current_user()
        allowed = bool(user and user.can("send_to_review"))
        note = SEND_NOTE if allowed else role_note("send_to_review")
        if not st.button(
            "Send to review", icon=":material/rate_review:", key="send_to_review", disabled=not allowed, help=note
        ):
            return
        with st.spinner("Storing the case..."):
            case.send_to_review(get_repo(), user)
    st.success(f"Sent to the review queue as case {case.review_case_id}.", icon=":material/check:")


# -------------------------------------------------------------------------------------- page
def render_case(opened: Opened, predictor, versions) -> None:
    """Everything about one opened scan, whatever its source: the verdict with its strip, the
    viewer with the heat map of the slice on screen, the key slices, the report and the queue."""
    case, key, vkey = opened
    case.predictor = predictor
    render_summary(case.volume)
    sequence_names(case, key)
    render_warnings(case.volume)
    pred = None
    if predictor is None:
        if versions is not None:
            render_no_models()
    else:
        with guarded("The prediction"):
            with st.spinner("Running the models on every slice..."):
                pred = case.prediction
            render_verdict(case)
        if pred is not None:
            with guarded("The slice strip"):
                render_slice_strip(case, vkey)

    st.subheader("Viewer")
    settings = {"on": False}
    if pred is not None:
        with guarded("The heat map controls"):
            settings = cam_controls(case, key)
    overlay = axial_overlay(case, settings) if pred is not None else None
    view = render_viewer(case.volume, vkey, axial_overlay=overlay, channel_data=case.normalized)
    if pred is not None:
        heatmaps = {}
        with guarded("The key-slice gallery"):
            heatmaps = render_key_slices(case, view, vkey, settings)
        with guarded("The report"):
            render_downloads(case, heatmaps, key)
        with guarded("Sending to the PACS"):
            render_send_to_pacs(case, heatmaps)
        with guarded("Sending to review"):
            render_send_to_review(case)
    render_metadata(case.volume)


def _models():
    predictor = versions = None
    with guarded("Loading the models"):
        predictor, versions = get_predictor()
    return predictor, versions


def render_scan(files, loader=None) -> Case | None:
    """Everything below the uploader. `files`: UploadedFile objects (or anything core.io reads)."""
    if not files:
        st.info("Drop a scan above to view it. " + UPLOAD_HELP, icon=":material/upload_file:")
        return None
    predictor, versions = _models()
    grade = predictor.models.get("grade") if predictor is not None else None
    opened = open_upload(files, suggested=grade.sequences if grade else None, loader=loader)
    if opened is None:
        return None
    render_case(opened, predictor, versions)
    return opened.case


def render_pacs() -> Case | None:
    """A study from the PACS: search, open, and the same case view as an upload."""
    opened = open_from_pacs()
    if opened is None:
        return None
    render_case(opened, *_models())
    return opened.case


SOURCES = ("Upload", "Open from PACS")


def main() -> None:
    st.title("Scan")
    st.caption(DISCLAIMER)
    source = st.segmented_control(
        "Source", SOURCES, default=SOURCES[0], key="scan_source", label_visibility="collapsed"
    )
    if source == SOURCES[1]:
        render_pacs()
        return
    files = st.file_uploader("Upload a scan", accept_multiple_files=True, help=UPLOAD_HELP, key="scan_upload")
    render_scan(files)


if __name__ == "__main__":  # streamlit runs page files as __main__; tests import the functions
    main()
