"""Scan: upload a scan -> three-plane viewer -> verdict -> Grad-CAM -> report.

Thin page: widgets in, `core` calls, draw what core returns. Each section is a small function:
loading (`load_cached`), channel naming (`sequence_picker`), the verdict card (`render_verdict`),
the per-slice strip (`render_slice_strip`), the viewer with the Grad-CAM overlay on the axial plane
(`render_viewer`), the key-slice gallery and the downloads. `render_scan(files)` is the whole page
below the uploader; tests call it with files they make.

Models: `core.inference.Predictor` built once per set of active versions (`st.cache_resource`
keyed by `model_zoo.active_version` of each task, so a promotion is picked up on the next rerun
without a restart); the prediction is kept per case in `st.session_state`; heat maps come from
`core.explain.cam` (cached there per case, slice, method and class), only for the slice on screen
and the key slices.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import re

import numpy as np
import streamlit as st

from core import preprocess, viz
from core.inference import CANNOT_ASSESS, NOT_VALIDATED
from core.io import VolumeLoadError, load_volume
from core.io.volume import Volume
from core.markup import text
from core.tasks import TASKS, class_title, task_title
from core.referral import operating_point_text
from core.verdict import headline, headline_reason, refer_messages, slice_label, task_rows, thresholds_text

log = logging.getLogger("neurograde.pages.scan")

UPLOAD_HELP = ("One NIfTI file (.nii, .nii.gz), all files of one DICOM series (or a .zip of them), "
               "or one slice image (PNG, JPEG, TIFF). Files are processed in memory; identifying "
               "header fields are never shown or stored.")
DEFAULT_SERIES = "Default (largest MR series)"
_CACHE = "_scan_cache"      # session_state: the loaded volume of the current upload
_NORM = "_scan_norm"        # session_state: normalised arrays of the current volume, per channel
_PRED = "_scan_pred"        # session_state: the prediction of the current case
_XSL = "_scan_xslices"      # session_state: model-input slices of the current case, per task
_PDF = "_scan_pdf"          # session_state: the PDF report of the current case and CAM settings
_SEQINFO = "_scan_seqinfo"  # session_state: {upload: (kind, number of channels)} of multi-channel input
_SENT = "_scan_sent"        # session_state: {case: case id} of cases sent to the review queue

DISCLAIMER = ("Research use only — not a medical device. NeuroGrade supports, and never replaces, "
              "the judgement of a qualified clinician.")
COLOR_MAPS = ("jet", "turbo", "inferno", "viridis", "hot")
DEFAULT_SEQUENCES = ("t1pre", "flair", "t1post")   # TCGA-LGG slices store them as R, G, B
NOT_SEQUENCES = {"rgb": "Not MR sequences (a colour picture)", "volumes": "Unnamed (t0, t1, …)"}
OTHER_NAMES = "Other names…"


# ----------------------------------------------------------------------------------- loading
def upload_key(files, series=None, sequences=None) -> str:
    """Identifies an upload by file names and sizes (and the chosen series and channel names):
    reruns reuse it."""
    parts = [f"{getattr(f, 'name', '?')}:{_size(f)}" for f in files]
    parts.append(f"series={series}")
    if sequences:
        parts.append("sequences=" + ",".join(sequences))
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def _size(f) -> int:
    size = getattr(f, "size", None)
    if size is None and hasattr(f, "getvalue"):
        size = len(f.getvalue())
    return int(size or 0)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def load_cached(files, series=None, loader=load_volume, sequences=None) -> tuple[Volume | None, str | None]:
    """(volume, None) or (None, error message for the user). Loads once per upload_key."""
    key = upload_key(files, series, sequences)
    cached = st.session_state.get(_CACHE)
    if cached is not None and cached["key"] == key:
        return cached["volume"], cached["error"]
    volume, error = None, None
    options = {"series": series}
    if sequences:
        options["sequences"] = list(sequences)
    try:
        with st.spinner("Reading the scan..."):
            volume = loader(list(files), **options)
    except VolumeLoadError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - never a traceback in the UI
        log.exception("unexpected error loading an upload of %d file(s)", len(files))   # names may identify
        error = f"Could not read this file: {_first_line(exc)}"
    st.session_state[_CACHE] = {"key": key, "volume": volume, "error": error}
    st.session_state.pop(_NORM, None)
    return volume, error


def normalized(volume: Volume, channel: str) -> np.ndarray:
    """The channel scaled to [0, 1] once per volume and channel (kept in session_state)."""
    key = (id(volume), channel)
    store = st.session_state.get(_NORM)
    if store is None or store.get("volume") != id(volume):
        store = {"volume": id(volume)}
        st.session_state[_NORM] = store
    if key not in store:
        store[key] = preprocess.normalize_intensity(volume.channels[channel])
    return store[key]


@contextlib.contextmanager
def guarded(what: str):
    """Runs a section; an unexpected error becomes an st.error with its message (logged with the
    traceback), never a traceback on the page. Streamlit's own control flow passes through."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - st.rerun / st.stop are BaseExceptions and pass
        log.exception("scan page: %s failed", what)
        st.error(f"{what} failed: {_first_line(exc)}", icon=":material/error:")


# ------------------------------------------------------------------------- channel naming
def _channel_kind(volume: Volume) -> tuple[str, int] | None:
    """("rgb", 3) for a colour image whose channels were not named, ("volumes", n) for a 4D file
    with unnamed volumes t0..tn, else None (nothing to name)."""
    names = list(volume.channels)
    if {"red", "green", "blue"} <= set(names):
        return "rgb", 3
    if len(names) > 1 and all(re.fullmatch(r"t\d+", n) for n in names):
        return "volumes", len(names)
    return None


def _parse_names(text: str) -> list[str]:
    return [s for s in (x.strip() for x in re.split(r"[,;\s]+", text or "")) if s]


def chosen_sequences(base: str) -> list[str] | None:
    """The channel names the user gave for upload `base` (None: leave the channels unnamed)."""
    choice = st.session_state.get(f"scan_seq_{base}")
    if not choice or choice in NOT_SEQUENCES.values():
        return None
    if choice == OTHER_NAMES:
        return _parse_names(st.session_state.get(f"scan_seq_text_{base}", "")) or None
    return _parse_names(choice) or None


def sequence_picker(base: str, suggested) -> None:
    """For multi-channel input (an RGB slice, a 4D file): name the channels, as the CLI's
    --sequences does; the choice reloads the scan with load_volume(sequences=...). The grade model
    reads T1 pre-contrast, FLAIR and T1 post-contrast, which TCGA-LGG slices store as R, G, B."""
    info = st.session_state.get(_SEQINFO, {}).get(base)
    if info is None:
        return
    kind, n = info
    suggested = [str(s) for s in (suggested or DEFAULT_SEQUENCES)]
    options = [NOT_SEQUENCES[kind]]
    if len(suggested) == n:
        options.append(", ".join(suggested))
    if ", ".join(DEFAULT_SEQUENCES) not in options and n == len(DEFAULT_SEQUENCES):
        options.append(", ".join(DEFAULT_SEQUENCES))
    options.append(OTHER_NAMES)
    what = "colour channels (R, G, B)" if kind == "rgb" else f"{n} volumes"
    c1, c2 = st.columns([2, 3])
    c1.selectbox(f"The {what} of this image are", options, key=f"scan_seq_{base}",
                 help="Name the channels when they are MR sequences (as the CLI's --sequences does). "
                      "TCGA-LGG slices store T1 pre-contrast, FLAIR and T1 post-contrast as R, G, B; "
                      "the grade model needs exactly these.")
    if st.session_state.get(f"scan_seq_{base}") == OTHER_NAMES:
        c2.text_input(f"{n} names, comma separated, in channel order", key=f"scan_seq_text_{base}",
                      placeholder=", ".join(suggested))


def _remember_channels(base: str, volume: Volume | None) -> None:
    if volume is None:
        return
    kind = _channel_kind(volume)
    if kind is not None:
        info = dict(st.session_state.get(_SEQINFO, {}))
        info[base] = kind
        st.session_state[_SEQINFO] = info


# ---------------------------------------------------------------------------------- sections
def _series_label(i: int, s: dict) -> str:
    desc = s.get("description") or s.get("SeriesDescription") or s.get("series_description") or ""
    mod = s.get("modality") or s.get("Modality") or ""
    n = next((s[k] for k in ("n_images", "num_images", "n_instances", "n_slices", "count", "images")
              if k in s), None)
    bits = [b for b in (str(mod), str(desc).strip(), f"{n} images" if n is not None else "") if b]
    return f"Series {i + 1}: " + (", ".join(bits) if bits else "unnamed")


def _series_id(i: int, s: dict):
    return s.get("uid") or s.get("series_uid") or s.get("SeriesInstanceUID") or i


def select_series(volume: Volume, base: str = "") -> object | None:
    """When the upload holds several series: a selectbox; returns the chosen series id or None."""
    if len(volume.series) <= 1:
        return None
    labels = [DEFAULT_SERIES] + [_series_label(i, s) for i, s in enumerate(volume.series)]
    choice = st.selectbox(f"This upload holds {len(volume.series)} series", labels, key=f"scan_series_{base}")
    if choice == DEFAULT_SERIES:
        return None
    i = labels.index(choice) - 1
    return _series_id(i, volume.series[i])


def render_summary(volume: Volume) -> None:
    sz, sy, sx = volume.spacing
    st.caption(f"{' × '.join(str(n) for n in volume.shape)} voxels (z × y × x) · "
               f"{sz:.3g} × {sy:.3g} × {sx:.3g} mm · {volume.modality} · {volume.source_format}")


def render_warnings(volume: Volume) -> None:
    for message in volume.warnings:
        st.warning(text(message, None), icon=":material/warning:")   # may quote the file


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
    if st.session_state.get("scan_channel") not in names:   # the channels changed (renamed)
        st.session_state.pop("scan_channel", None)
    active = volume.active_channel
    return st.radio("Sequence / channel", names, index=names.index(active) if active in names else 0,
                    horizontal=True, key="scan_channel")


def axial_key(vkey: str) -> str:
    """session_state key of the axial slider (1-based), which the strip and the gallery move."""
    return f"pos_axial_{vkey}"


def render_viewer(volume: Volume, vkey: str = "v", axial_overlay=None) -> dict:
    """Three linked planes with sliders and crosshairs. Returns the view state (channel, position
    (z, y, x), window) so later sections (verdict, Grad-CAM) can follow the user's slice.

    axial_overlay(index, windowed (H, W) slice) -> (RGB uint8 image, caption) or None: drawn in
    place of the axial slice (the Grad-CAM heat map of the slice on screen)."""
    channel = channel_picker(volume)
    center, width = window_controls()
    data = normalized(volume, channel)
    shape = data.shape
    planes = preprocess.PLANES if shape[0] > 1 else ("axial",)
    for plane in preprocess.PLANES:  # sliders count from 1; start in the middle of the scan
        st.session_state.setdefault(f"pos_{plane}_{vkey}", preprocess.num_slices(shape, plane) // 2 + 1)
    cols = st.columns(len(planes))
    for col, plane in zip(cols, planes):
        with col:
            n = preprocess.num_slices(shape, plane)
            title = preprocess.plane_title(volume, plane)
            st.markdown(f"**{title}**")
            if len(planes) > 1 and n > 1:
                st.slider(f"{title} slice", 1, n, key=f"pos_{plane}_{vkey}",
                          label_visibility="collapsed")
    position = tuple(int(np.clip(st.session_state[f"pos_{p}_{vkey}"] - 1, 0, preprocess.num_slices(shape, p) - 1))
                     for p in preprocess.PLANES)  # voxel indices (z, y, x)
    for col, plane in zip(cols, planes):
        idx = position[preprocess.PLANES.index(plane)]
        img = preprocess.apply_window(preprocess.display_slice(data, plane, idx), center, width)
        note = None
        if plane == "axial" and axial_overlay is not None:
            with col:
                drawn = axial_overlay(idx, img)
            if drawn is not None:
                img, note = drawn
        others = [p for p in preprocess.PLANES if p != plane]
        cross = preprocess.crosshair(shape, plane, position) if len(planes) > 1 else None
        # horizontal line: the plane cutting rows; vertical: the plane cutting columns
        hplane = "coronal" if plane == "axial" else "axial"
        vplane = [p for p in others if p != hplane][0]
        fig = viz.slice_figure(img, preprocess.plane_aspect(volume, plane), crosshair=cross,
                               crosshair_colors=(viz.CROSSHAIR_COLORS[hplane], viz.CROSSHAIR_COLORS[vplane]),
                               height=340 if len(planes) > 1 else 520)
        with col:
            st.plotly_chart(fig, key=f"fig_{plane}_{vkey}", config={"displayModeBar": False})
            n = preprocess.num_slices(shape, plane)
            st.caption(slice_label(idx, n) + (f" · {note}" if note else ""))
    return {"channel": channel, "position": position, "window": (center, width)}


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
            st.json({k: _jsonable(v) for k, v in volume.meta.items()}, expanded=False)


def _jsonable(v):
    if isinstance(v, float) or isinstance(v, np.floating):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


# ------------------------------------------------------------------------------------ models
def active_versions() -> tuple[tuple[str, str], ...]:
    """((task, active version), ...) for the tasks that have a model; read on every run, so a
    promotion (active.json) or a newly shipped version is picked up without a restart."""
    from model_zoo.checkpoints import active_version

    out = []
    for task in TASKS:
        try:
            version = active_version(task)
        except Exception as exc:  # noqa: BLE001 - one unreadable task must not hide the others
            log.warning("active version of %s unavailable: %s", task, exc)
            version = None
        if version:
            out.append((task, str(version)))
    return tuple(out)


@st.cache_resource(show_spinner="Loading the models...", max_entries=4)
def _predictor_for(versions: tuple[tuple[str, str], ...], home: str, device: str):
    """One Predictor per (active versions, NEUROGRADE_HOME, device setting), shared by sessions."""
    from core.inference import Predictor

    refs = {task: f"{task}@{version}" for task, version in versions}
    try:
        return Predictor.from_refs(refs, device=device)
    except ValueError as exc:  # a bad NEUROGRADE_DEVICE: run on the CPU and say so
        return Predictor.from_refs(refs, device="cpu", notes=[f"device: {exc}; running on the CPU"])


def get_predictor():
    """(Predictor or None when no model is installed, active versions)."""
    from core.config import get_settings

    versions = active_versions()
    if not versions:
        return None, versions
    settings = get_settings()
    return _predictor_for(versions, str(settings.home), str(settings.device or "auto")), versions


def case_prediction(predictor, versions, volume: Volume, case_key: str, source: str):
    """The prediction of the current case, computed once per (case, model versions)."""
    key = (case_key, versions)
    cached = st.session_state.get(_PRED)
    if cached is not None and cached["key"] == key:
        return cached["pred"]
    with st.spinner("Running the models on every slice..."):
        pred = predictor.predict_volume(volume, source=source)
    st.session_state[_PRED] = {"key": key, "pred": pred}
    st.session_state.pop(_XSL, None)
    st.session_state.pop(_PDF, None)
    return pred


def model_slices(predictor, volume: Volume, case_key: str, task: str) -> np.ndarray:
    """The axial slices `task`'s model reads ((N, H, W), or (N, C, H, W) for a multi-sequence
    model), display-oriented and normalised like the prediction's; once per case and task."""
    store = st.session_state.get(_XSL)
    if store is None or store.get("case") != case_key:
        store = {"case": case_key}
        st.session_state[_XSL] = store
    if task not in store:
        base = store.get("_base")
        if base is None:
            base = store["_base"] = preprocess.slices(volume, "axial")
        x, _why = predictor.task_slices(task, volume, base, None, True)
        store[task] = base if x is None else x
    return store[task]


# ----------------------------------------------------------------------------------- verdict
STATUS_FLAGS = {"ok": ":green[ok]", "refer": ":orange[refer]", CANNOT_ASSESS: ":red[cannot assess]",
                NOT_VALIDATED: ":gray[not validated]", "not_applicable": ":gray[not applicable]"}


def _task_table(pred) -> str:
    """One row per task, in the words of core.verdict (no numbers for a task without an answer)."""
    rows = ["| | Result | Probability | Entropy | Margin | Read on | |", "|---|---|---:|---:|---:|---|---|"]
    for row, res in zip(task_rows(pred), pred.tasks.values()):
        u = res.uncertainty
        numbers = (f"{row.probability:.1%} | {u.get('entropy_norm', 0.0):.2f} | {u.get('margin', 0.0):.2f}"
                   if row.probability is not None else "— | — | —")
        rows.append(f"| {row.title} | {row.result} | {numbers} | {row.read_on or '—'} | "
                    f"{STATUS_FLAGS.get(row.status, row.status)} |")
    return "\n".join(rows)


def _badge(pred) -> str:
    if pred.status == CANNOT_ASSESS:
        return ":red-badge[:material/block: Cannot assess]"
    if pred.refer:
        return ":orange-badge[:material/front_hand: Refer to a human reader]"
    return ":green-badge[:material/check_circle: Within the confidence thresholds]"


def render_task_answers(pred) -> None:
    """Per task: its probability bars, or why it gives no answer (a task without a validated model
    points to its card on the Models page)."""
    for row, r in zip(task_rows(pred), pred.tasks.values()):
        st.markdown(f"**{row.title}** <span style='color:#6b7785;font-size:0.8em'>"
                    f"{text(r.model_version)}</span>", unsafe_allow_html=True)
        if r.answered:
            fig = viz.probability_bars([class_title(c) for c in r.classes], r.probabilities,
                                       highlight=class_title(r.label), height=36 + 30 * len(r.classes))
            st.plotly_chart(fig, key=f"bars_{r.task}", config={"displayModeBar": False})
        elif r.status == NOT_VALIDATED:
            st.info(f"**{row.result}.** {row.reason}", icon=":material/block:")
        else:
            st.caption(row.result + (f" — {row.reason}" if row.reason else ""))


def render_technical_details(pred, predictor=None) -> None:
    """Model versions, precision, device, timing, the thresholds and the notes: collapsed."""
    with st.expander("Technical details", expanded=False):
        versions = " · ".join(f"`{v}`" if "`" not in str(v) else text(v)      # a code span shows text as is
                              for v in pred.model_versions.values()) or "none"
        precision = ", ".join(sorted(set(pred.precision.values()))) or "fp32"
        st.caption(f"Models: {versions} · {precision} on {pred.device} · "
                   f"{pred.timings_ms.get('total', 0.0) / 1e3:.2f} s for {pred.n_slices} "
                   f"slice{'s' if pred.n_slices != 1 else ''}")
        st.caption(thresholds_text({t: m.card for t, m in predictor.models.items()} if predictor else None))
        for note in pred.notes:
            note = note.replace("name the channels of multi-channel input with sequences=",
                                "for a multi-channel image, name its channels above")
            st.caption(f":material/info: {note}")      # the predictor's own words (core), not user text


def render_verdict(pred, predictor=None) -> None:
    """Verdict card: the refer banner with its reasons, the verdict (or why there is none) with its
    calibrated probability and uncertainty, a row per task, each task's answer, then the
    technical details (collapsed)."""
    st.subheader("Verdict")
    if pred.refer:
        why = ("the models cannot assess this scan" if pred.status == CANNOT_ASSESS
               else "the model is unsure or the scan is unlike its training data")
        st.warning(f"**Refer to a human reader.** {why[0].upper() + why[1:]}:\n\n"
                   + "\n".join(f"- {text(m)}" for m in refer_messages(pred)), icon=":material/front_hand:")
    title, task, prob = headline(pred)
    with st.container(border=True):
        left, right = st.columns([1.15, 1], gap="large")
        with left:
            st.markdown(f"## {text(title)}\n{_badge(pred)}")
            reason = headline_reason(pred)
            if reason:                          # may quote the file's header (e.g. its body part)
                st.error(text(reason, None), icon=":material/block:")
            res = pred.tasks.get(task) if task else None
            if res is not None and prob is not None:
                u = res.uncertainty
                m1, m2, m3 = st.columns(3)
                point = operating_point_text(predictor.model(task).card) if predictor and task in predictor.models else None
                m1.metric("Probability", f"{prob:.1%}",
                          help=f"{task_title(task)}: calibrated probability of '{class_title(res.label)}' "
                               "(temperature scaling from the model card). " + (point or ""))
                m2.metric("Entropy", f"{u.get('entropy_norm', 0.0):.2f}",
                          help="uncertainty: predictive entropy / log(number of classes); 0 = certain, 1 = uniform")
                m3.metric("Margin", f"{u.get('margin', 0.0):.2f}",
                          help="top-1 minus top-2 class probability")
            if pred.tasks:
                st.markdown(_task_table(pred))
        with right:
            render_task_answers(pred)
        st.caption(DISCLAIMER)
    render_technical_details(pred, predictor)


def _goto(key: str, value: int) -> None:
    st.session_state[key] = int(value)


def _strip_selected(strip_key: str, pos_key: str, n: int) -> None:
    """on_select callback: the clicked slice becomes the viewer's axial slice (before the rerun,
    so the axial slider is created with it)."""
    i = viz.selected_slice(st.session_state.get(strip_key), n)
    if i is not None:
        st.session_state[pos_key] = i + 1


def render_slice_strip(pred, predictor, vkey: str) -> None:
    """P(tumour) and class probabilities per axial slice; a click moves the viewer there."""
    from core.inference import PRESENCE_THRESHOLD

    n = len(pred.slices)
    if n <= 1:
        return
    pos_key = axial_key(vkey)
    current = int(st.session_state.get(pos_key, n // 2 + 1)) - 1
    task = next((t for t in ("tumor_type", "grade") if pred.slices and t in pred.slices[0]), None)
    classes = [class_title(c) for c in predictor.model(task).classes] if task else None
    fig = viz.slice_strip(pred.slices, task=task, classes=classes, current=current,
                          key_slices=pred.key_slices, threshold=PRESENCE_THRESHOLD)
    st.markdown("**Slice by slice**")
    strip_key = f"strip_{vkey}"
    st.plotly_chart(fig, key=strip_key, on_select=lambda: _strip_selected(strip_key, pos_key, n),
                    selection_mode="points", config={"displayModeBar": False})
    st.caption(f"Bars: P(tumour) per axial slice (the slice's weight in the verdict; dotted line "
               f"{PRESENCE_THRESHOLD:g}). Lines: {task_title(task).lower() if task else 'class'} "
               f"probabilities on the slices that weigh in the verdict (the type and grade models read "
               f"only those). ★ key slices. Click a slice to show it in the viewer.")


# ---------------------------------------------------------------------------------- Grad-CAM
def cam_controls(pred, predictor, case_key: str) -> dict:
    """Method, task, target class (default: the verdict), colour map, opacity."""
    from core import explain

    tasks = [t for t, r in pred.tasks.items() if t in predictor.models and r.answered]   # no heat map without an answer
    if not tasks:
        return {"on": False}
    default_task = "tumor_type" if "tumor_type" in tasks else tasks[0]
    methods = list(explain.METHODS)
    st.session_state.setdefault("cam_method", explain.DEFAULT_METHOD)
    st.session_state.setdefault("cam_cmap", COLOR_MAPS[0])
    st.session_state.setdefault("cam_alpha", 0.4)
    st.session_state.setdefault("cam_on", True)
    if st.session_state.get("cam_task") not in tasks:
        st.session_state["cam_task"] = default_task
    c0, c1, c2, c3, c4, c5 = st.columns([1.1, 1.2, 1.2, 1.3, 0.9, 1.1], vertical_alignment="bottom")
    c0.toggle("Heat map", key="cam_on", help="Grad-CAM family overlay on the axial slice on screen")
    c1.selectbox("Method", methods, key="cam_method",
                 format_func=lambda m: explain.METHODS[m].label + (" (slow)" if explain.METHODS[m].slow else ""),
                 help="; ".join(f"{m.label}: {m.note}" for m in explain.METHODS.values()))
    task = c2.selectbox("Explain", tasks, key="cam_task", format_func=task_title)
    res = pred.tasks[task]
    classes = list(predictor.model(task).classes)
    class_key = f"cam_class_{task}_{case_key}"
    if st.session_state.get(class_key) not in classes:
        st.session_state[class_key] = res.label if res.label in classes else classes[0]
    target = c3.selectbox("Target class", classes, key=class_key,
                          format_func=lambda c: class_title(c) + (" (verdict)" if c == res.label else ""))
    c4.selectbox("Colours", COLOR_MAPS, key="cam_cmap")
    c5.slider("Opacity", 0.0, 1.0, step=0.05, key="cam_alpha")
    method = st.session_state["cam_method"]
    if explain.METHODS[method].slow and st.session_state["cam_on"]:
        st.warning(f"{explain.METHODS[method].label} is slow: {explain.METHODS[method].note}. "
                   "The key-slice gallery and the report keep Grad-CAM.", icon=":material/hourglass_top:")
    return {"on": bool(st.session_state["cam_on"]), "method": method, "task": task,
            "class_index": classes.index(target), "class_name": target,
            "cmap": st.session_state["cam_cmap"], "alpha": float(st.session_state["cam_alpha"])}


def slice_cam(predictor, volume: Volume, case_key: str, settings: dict, index: int, method: str | None = None):
    """CamResult of axial slice `index` for the chosen task, class and method (cached in core.explain)."""
    from core import explain

    x = model_slices(predictor, volume, case_key, settings["task"])
    return explain.cam(predictor, x[index], method or settings["method"], settings["class_index"],
                       task=settings["task"], case_key=case_key, slice_index=int(index))


def make_axial_overlay(predictor, volume: Volume, case_key: str, settings: dict):
    """The viewer's axial overlay: the heat map of the slice on screen, computed on demand."""
    from core import explain

    if not settings.get("on"):
        return None

    def draw(index: int, img: np.ndarray):
        label = explain.METHODS[settings["method"]].label
        try:
            with st.spinner(f"{label} for slice {index + 1}..."):
                res = slice_cam(predictor, volume, case_key, settings, index)
        except Exception as exc:  # noqa: BLE001 - the viewer still shows the slice
            log.exception("CAM failed for slice %s", index)
            st.error(f"Heat map unavailable: {_first_line(exc)}", icon=":material/error:")
            return None
        rgb = viz.overlay(img, res.heatmap, settings["cmap"], settings["alpha"])
        took = "cached" if res.cached else f"{res.ms:.0f} ms"
        return rgb, f"{label} for {class_title(res.class_name)} ({took})"

    return draw


def gallery_settings(settings: dict) -> dict:
    """The gallery and the report use the chosen method unless it is slow (then Grad-CAM)."""
    from core import explain

    method = settings["method"]
    if explain.METHODS[method].slow:
        method = explain.DEFAULT_METHOD
    return {**settings, "method": method}


def render_key_slices(pred, predictor, volume: Volume, view: dict, case_key: str, vkey: str,
                      settings: dict) -> dict:
    """The key slices (most tumour-like) with their heat maps; returns {index: CamResult}."""
    from core import explain

    cams = {}
    if not pred.key_slices or not settings.get("task"):
        return cams
    gs = gallery_settings(settings)
    for k in pred.key_slices:
        cams[k] = slice_cam(predictor, volume, case_key, gs, k)
    if len(pred.slices) <= 1:
        return cams                          # a single image: the viewer already shows it
    st.markdown("**Key slices**")
    st.caption(f"The slices with the highest P(tumour), with the {explain.METHODS[gs['method']].label} "
               f"heat map for {class_title(gs['class_name'])}.")
    data = normalized(volume, view["channel"])
    center, width = view["window"]
    cols = st.columns(max(3, len(pred.key_slices)))
    for col, k in zip(cols, pred.key_slices):
        img = preprocess.apply_window(preprocess.display_slice(data, "axial", k), center, width)
        rgb = viz.overlay(img, cams[k].heatmap, gs["cmap"], gs["alpha"]) if settings.get("on") else img
        p = pred.slices[k].get("presence")
        label = slice_label(k, len(pred.slices))
        cap = label + (f" · P(tumour) {p:.2f}" if p is not None else "")
        with col:
            st.image(rgb, caption=cap, width="stretch", clamp=True, alt=f"Grad-CAM heat map, key {label}")
            st.button("Show in viewer", key=f"goto_{vkey}_{k}", icon=":material/center_focus_strong:",
                      on_click=_goto, args=(axial_key(vkey), k + 1), width="stretch")
    return cams


# ---------------------------------------------------------------------------------- downloads
def upload_label(files, volume: Volume | None = None) -> str:
    """How the case names its source in the PDF, the JSON export and the store: never the file
    names (they can name the patient), only what was uploaded ("uploaded NIfTI", "3 uploaded files")."""
    kind = {"nifti": "NIfTI", "dicom": "DICOM series", "dicom-enhanced": "DICOM series",
            "image": "image"}.get(getattr(volume, "source_format", ""), "scan")
    n = len(files or [])
    return f"uploaded {kind}" + (f" ({n} files)" if n > 1 else "")


def _stem(files) -> str:
    name = getattr(files[0], "name", "scan") if files else "scan"
    stem = re.sub(r"(\.nii)?\.gz$|\.[A-Za-z0-9]+$", "", str(name))
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:60] or "scan"


def render_downloads(pred, predictor, volume: Volume, case_key: str, cams: dict, files) -> None:
    """PDF case report (key slices with heat maps, probabilities, uncertainty, model cards,
    intended use) and the JSON export."""
    from core import report

    stem = case_key[:12]          # not the upload's file name: the saved file must not carry it
    pdf_key = (case_key, tuple(sorted((k, c.method, c.class_index, c.task) for k, c in cams.items())))
    cached = st.session_state.get(_PDF)
    if cached is None or cached["key"] != pdf_key:
        with st.spinner("Writing the case report..."):
            cards = {t: predictor.models[t].card for t in pred.tasks if t in predictor.models}
            pdf = report.build_pdf(pred, preprocess.slices(volume, "axial"), cams=cams, cards=cards,
                                   meta=volume.meta)
        cached = {"key": pdf_key, "pdf": pdf}
        st.session_state[_PDF] = cached
    data = json.dumps(_jsonable(report.build_json(pred, meta=volume.meta)), indent=2)
    st.markdown("**Report**")
    c1, c2, _ = st.columns([1, 1, 2])
    c1.download_button("PDF case report", cached["pdf"], file_name=f"neurograde_{stem}.pdf",
                       mime="application/pdf", icon=":material/picture_as_pdf:", key="dl_pdf",
                       on_click="ignore", width="stretch")
    c2.download_button("JSON export", data, file_name=f"neurograde_{stem}.json", mime="application/json",
                       icon=":material/data_object:", key="dl_json", on_click="ignore", width="stretch")


def render_send_to_review(pred, volume: Volume, case_key: str) -> None:
    """Store the de-identified case with its per-slice predictions in the review queue."""
    from core import review
    from pages.common import current_user, get_repo, role_note

    sent = st.session_state.setdefault(_SENT, {})
    if case_key in sent:
        st.success(f"Sent to the review queue as case {sent[case_key]}.", icon=":material/check:")
        return
    user = current_user()
    allowed = bool(user and user.can("send_to_review"))
    if st.button("Send to review", icon=":material/rate_review:", key="send_to_review", disabled=not allowed,
                 help="Stores the de-identified slices and the model's outputs; each slice joins the "
                      "review queue of every task." if allowed else role_note("send_to_review")):
        with st.spinner("Storing the case..."):
            sent[case_key] = review.send_to_review(get_repo(), volume, pred, actor=user)
        st.success(f"Sent to the review queue as case {sent[case_key]}.", icon=":material/check:")


def render_no_models(versions) -> None:
    st.subheader("Verdict")
    st.info("No model is installed yet: the viewer works, the verdict needs the tumour presence, "
            "type and grade models (`python -m core zoo list`; train or install them on the Models "
            "page).", icon=":material/schedule:")


# -------------------------------------------------------------------------------------- page
def render_scan(files, loader=load_volume) -> Volume | None:
    """Everything below the uploader. `files`: UploadedFile objects (or anything core.io reads)."""
    if not files:
        st.info("Drop a scan above to view it. " + UPLOAD_HELP, icon=":material/upload_file:")
        return None
    base = upload_key(files)
    chosen_by_upload = st.session_state.setdefault("_scan_series", {})
    series = chosen_by_upload.get(base)
    sequences = chosen_sequences(base)
    volume, error = load_cached(files, series, loader, sequences)
    if error is None and sequences is None:
        _remember_channels(base, volume)
    predictor = versions = None
    with guarded("Loading the models"):
        predictor, versions = get_predictor()
    suggested = None
    if predictor is not None and "grade" in predictor.models:
        suggested = predictor.models["grade"].sequences
    if error is not None:
        sequence_picker(base, suggested)
        st.error(error, icon=":material/error:")
        return None
    chosen = select_series(volume, base)
    if chosen != series:
        st.session_state["_scan_series"] = {base: chosen}
        volume, error = load_cached(files, chosen, loader, sequences)
        if error is not None:
            st.error(error, icon=":material/error:")
            return None
    vkey = upload_key(files, chosen)
    case_key = upload_key(files, chosen, sequences)
    render_summary(volume)
    sequence_picker(base, suggested)
    render_warnings(volume)

    pred = None
    if predictor is None:
        if versions is not None:
            render_no_models(versions)
    else:
        with guarded("The prediction"):
            source = upload_label(files, volume)
            pred = case_prediction(predictor, versions, volume, case_key, source)
            render_verdict(pred, predictor)
        if pred is not None:
            with guarded("The slice strip"):
                render_slice_strip(pred, predictor, vkey)

    st.subheader("Viewer")
    settings = {"on": False}
    if pred is not None:
        with guarded("The heat map controls"):
            settings = cam_controls(pred, predictor, case_key)
    overlay = make_axial_overlay(predictor, volume, case_key, settings) if pred is not None else None
    view = render_viewer(volume, vkey, axial_overlay=overlay)
    cams = {}
    if pred is not None:
        with guarded("The key-slice gallery"):
            cams = render_key_slices(pred, predictor, volume, view, case_key, vkey, settings)
        with guarded("The report"):
            render_downloads(pred, predictor, volume, case_key, cams, files)
        with guarded("Sending to review"):
            render_send_to_review(pred, volume, case_key)
    render_metadata(volume)
    return volume


def main() -> None:
    st.title("Scan")
    st.caption(DISCLAIMER)
    files = st.file_uploader("Upload a scan", accept_multiple_files=True, help=UPLOAD_HELP,
                             key="scan_upload")
    render_scan(files)


if __name__ == "__main__":  # streamlit runs page files as __main__; tests import the functions
    main()
