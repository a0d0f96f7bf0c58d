"""The scan page's second source: a study from the hospital's PACS over DICOMweb (core.pacs).

Search (patient ID, accession number, study dates) -> pick a study -> it is pulled into a temporary
folder, loaded as one volume (its sequences named and aligned) and deleted. The study's UIDs and
patient module, needed to send results back into the same study, stay in the Case in memory for this
session only; the search results show what the de-identification rules allow (date, modalities,
redacted description), never a name.
"""

from __future__ import annotations

import tempfile

import streamlit as st

from core.case import Case
from core.config import get_settings
from core.io.volume import VolumeLoadError
from core.pacs import PacsError, connect_from_settings, find, open_study, search_studies
from core.pacs.dicom_out import results_zip
from core.pacs.reference import SourceReference
from pages.common import current_user, role_note
from pages.scan_sources import Opened, open_case

_FOUND = "_pacs_found"  # session_state: the last search's StudySummary list (UIDs in memory only)
_CHOSEN = "_pacs_chosen"  # session_state: the handle of the study opened
NOT_CONFIGURED = (
    "No PACS is configured. Set `NEUROGRADE_PACS_URL` (the DICOMweb root, e.g. "
    "`https://pacs.hospital.org/dicom-web`) and, where the PACS asks for them, `NEUROGRADE_PACS_USER` "
    "and `NEUROGRADE_PACS_PASSWORD`, then restart the app."
)


def _study_label(study) -> str:
    bits = [study.study_date or "date unknown", "/".join(study.modalities) or "?", study.description or ""]
    if study.n_series is not None:
        bits.append(f"{study.n_series} series")
    return " · ".join(b for b in bits if b)


def search_form() -> None:
    """The search; its results (summaries) stay in the session for the pick below."""
    with st.form("pacs_search", border=True):
        c1, c2, c3, c4 = st.columns(4)
        patient_id = c1.text_input("Patient ID", key="pacs_patient_id")
        accession = c2.text_input("Accession number", key="pacs_accession")
        date_from = c3.date_input("Studies from", value=None, key="pacs_from")
        date_to = c4.date_input("to", value=None, key="pacs_to")
        if not st.form_submit_button("Search the PACS", icon=":material/search:"):
            return
    if not (patient_id or accession or date_from or date_to):
        st.warning("Give a patient ID, an accession number or a date range.", icon=":material/info:")
        return
    try:
        found = search_studies(
            connect_from_settings(), patient_id=patient_id, accession=accession, date_from=date_from, date_to=date_to
        )
    except PacsError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    st.session_state[_FOUND] = found
    st.session_state.pop(_CHOSEN, None)


def pick_study():
    """The study chosen among the search results (None until one is opened)."""
    found = st.session_state.get(_FOUND)
    if found is None:
        return None
    if not found:
        st.info("No study matches this search.", icon=":material/search_off:")
        return None
    labels = {s.handle: _study_label(s) for s in found}
    c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
    handle = c1.selectbox(f"{len(found)} studies found", list(labels), format_func=labels.get, key="pacs_pick")
    if c2.button("Open", icon=":material/download:", key="pacs_open", width="stretch"):
        st.session_state[_CHOSEN] = handle
    chosen = st.session_state.get(_CHOSEN)
    return find(found, chosen) if chosen else None


def _load(study, holder: dict):
    """Pull the study into a temporary folder (deleted at once) and read it as one volume."""

    def load():
        with tempfile.TemporaryDirectory(prefix="neurograde-pacs-") as folder:
            try:
                volume, pulled = open_study(connect_from_settings(), study.uid, folder)
            except PacsError as exc:
                raise VolumeLoadError(str(exc)) from None
        loaded = [s["uid"] for s in volume.series if s.get("uid")] or None
        try:
            holder["reference"] = SourceReference.from_datasets(pulled.headers, series_uids=loaded)
        except ValueError:
            holder["reference"] = pulled.reference
        return volume

    return load


def open_from_pacs() -> Opened | None:
    """The PACS source: search, pick, open. None until a study is open (or when it cannot be read)."""
    if not get_settings().pacs_url:
        st.info(NOT_CONFIGURED, icon=":material/lan:")
        return None
    user = current_user()
    if not (user and user.can("pacs")):
        st.info(role_note("pacs"), icon=":material/lock:")
        return None
    search_form()
    study = pick_study()
    if study is None:
        return None
    key = "pacs-" + study.handle
    holder: dict = {}
    case, error = open_case(key, _load(study, holder), lambda volume: "study from the PACS")
    if error is not None:
        st.error(error, icon=":material/error:")
        return None
    if case.reference is None and "reference" in holder:
        case.reference, case.from_pacs = holder["reference"], True
    return Opened(case, key, key)


def render_send_to_pacs(case: Case, heatmaps: dict) -> None:
    """Push the DICOM SR and key images into the study the case came from (STOW-RS)."""
    if not case.from_pacs:
        return
    if case.sent_to_pacs:
        st.success(
            f"Sent to the PACS: {len(case.sent_to_pacs)} objects (a structured report and key images) in this study.",
            icon=":material/check:",
        )
        return
    user = current_user()
    allowed = bool(user and user.can("pacs"))
    note = (
        "Stores a DICOM SR and key images (research use, not for diagnosis) in this study."
        if allowed
        else role_note("pacs")
    )
    if not st.button(
        "Send results to the PACS", icon=":material/cloud_upload:", key="pacs_push", disabled=not allowed, help=note
    ):
        return
    try:
        with st.spinner("Sending to the PACS..."):
            case.send_to_pacs(connect_from_settings(), heatmaps)
    except PacsError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    st.rerun()


def dicom_download(case: Case, heatmaps: dict):
    """Deferred bytes for the DICOM download (built when clicked): a zip of the SR and key images."""
    return lambda: results_zip(case.dicom_results(heatmaps))
