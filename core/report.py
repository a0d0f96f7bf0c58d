"""Case reports: a PDF (fpdf2) a clinician can file, and a JSON export for systems.

    pdf_bytes = report.build_pdf(prediction, slices01, cams={idx: CamResult}, cards={task: card})
    data = report.build_json(prediction, meta=volume.meta)

The PDF carries the verdict, a "refer to a human" banner with its reasons, a probability table
per task with the uncertainty (or why the task gives no answer: cannot assess, no validated model,
not applicable), key slices with their CAM overlays (core.viz.overlay), a summary of each model
card (version, metrics, intended use, limitations), a short "Technical details" section at the end
and "research use only - not a medical device". Words, class names and slice numbers come from
core.inference.verdict, as on the scan page. Only de-identified metadata goes in (core.io already strips
identity).
"""

from __future__ import annotations

import datetime as _dt
import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image

from core.cards import ModelCard
from core.inference import NOT_VALIDATED
from core.inference.verdict import headline, headline_reason, refer_messages, slice_label, task_row, thresholds_text
from core.tasks import class_title, task_title
from core.training.card_text import results_summary
from core.viz import overlay, to_uint8
from model_zoo import headline_metrics

DISCLAIMER = (
    "Research use only - not a medical device. This report supports, and never replaces, "
    "the judgement of a qualified clinician."
)
# metadata keys that are never written out, whatever a loader left in `meta`
_IDENTIFYING = {
    "patientname",
    "patientid",
    "patientbirthdate",
    "patientaddress",
    "otherpatientids",
    "referringphysicianname",
    "institutionname",
    "accessionnumber",
    "patient_name",
    "patient_id",
    "birth_date",
    "name",
}


def deidentified(meta: Mapping[str, Any] | None) -> dict:
    out = {}
    for k, v in (meta or {}).items():
        if str(k).replace(" ", "").lower() in _IDENTIFYING:
            continue
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[str(k)] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(x, (str, int, float)) for x in v):
            out[str(k)] = list(v)
    return out


def build_json(prediction, meta: Mapping[str, Any] | None = None) -> dict:
    """The prediction's JSON (`VolumePrediction.to_dict`) with the headline the page and the PDF
    show, de-identified metadata, the time and the disclaimer."""
    data = json.loads(prediction.to_json())  # plain JSON values (NaN -> null)
    data["headline"] = headline(prediction)[0]
    data["headline_reason"] = headline_reason(prediction)
    data["meta"] = deidentified(meta)
    data["generated"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    data["disclaimer"] = DISCLAIMER
    return data


def _latin(text: Any) -> str:
    s = str(text)
    for a, b in {
        "\u2014": "-",
        "\u2013": "-",
        "\u2019": "'",
        "\u2018": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2265": ">=",
        "\u2264": "<=",
        "\u00b1": "+/-",
        "\u2026": "...",
    }.items():
        s = s.replace(a, b)
    return s.encode("latin-1", "replace").decode("latin-1")


def _png(img_uint8: np.ndarray) -> io.BytesIO:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(img_uint8, dtype=np.uint8)).save(buf, format="PNG")
    buf.seek(0)
    return buf


def _card_metrics(card: ModelCard) -> str:
    try:
        m = headline_metrics(card)
    except Exception:  # noqa: BLE001
        m = {}
    return ", ".join(f"{k} {v:.3f}" for k, v in list(m.items())[:6]) or "not recorded"


class _Page:
    """The PDF being written (A4, automatic page breaks) and the one way text goes on it."""

    def __init__(self, compress: bool):
        from fpdf import FPDF  # heavy: fpdf, loaded on first use

        self.pdf = FPDF(format="A4")
        self.pdf.set_compression(compress)
        self.pdf.set_auto_page_break(True, margin=15)
        self.pdf.add_page()
        self.epw = self.pdf.w - self.pdf.l_margin - self.pdf.r_margin  # effective page width

    def line(self, text, size=10, style="", h=5.5, color=(0, 0, 0)) -> None:
        self.pdf.set_font("Helvetica", style, size)
        self.pdf.set_text_color(*color)
        self.pdf.multi_cell(self.epw, h, _latin(text), new_x="LMARGIN", new_y="NEXT")
        self.pdf.set_text_color(0, 0, 0)


def build_pdf(
    prediction,
    slices01: np.ndarray | None = None,
    cams: Mapping[int, Any] | None = None,
    cards: Mapping[str, Mapping] | None = None,
    meta: Mapping[str, Any] | None = None,
    title: str = "NeuroGrade case report",
    compress: bool = True,
) -> bytes:
    """The PDF as bytes. slices01: (N, H, W) display slices in [0, 1]; cams: {slice index:
    CamResult} drawn over the key slices; cards: {task: ModelCard (or its card.json dict)}."""
    page = _Page(compress)
    line = page.line
    line(title, 16, "B", 9)
    line(
        f"Generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}   Source: {prediction.source or '-'}   "
        f"Slices: {prediction.n_slices}",
        8,
        color=(90, 90, 90),
    )
    line(DISCLAIMER, 8, "I", color=(150, 0, 0))
    page.pdf.ln(2)
    _verdict(page, prediction)
    for res in prediction.tasks.values():
        _task_section(page, res)
    ood = prediction.ood or {}
    line(f"Input check: {'looks unlike the training data' if ood.get('is_ood') else 'looks like brain MRI'}", 9)
    if slices01 is not None and len(prediction.key_slices):
        _key_slices(page, prediction, slices01, cams)
    if cards:
        _model_cards(line, prediction, cards)
    md = deidentified(meta)
    if md:
        line(
            "Scan metadata (de-identified): " + ", ".join(f"{k}={v}" for k, v in list(md.items())[:20]),
            7,
            color=(90, 90, 90),
        )
    _technical_details(line, prediction)
    page.pdf.ln(2)
    line(DISCLAIMER, 8, "I", color=(150, 0, 0))
    return bytes(page.pdf.output())


def _verdict(page: _Page, prediction) -> None:
    """The headline, why, and the "refer to a human" banner with its reasons."""
    pdf, line = page.pdf, page.line
    text, task, prob = headline(prediction)
    line(f"Verdict: {text}" + (f" ({prob:.0%}, {task_title(task)})" if prob is not None else ""), 14, "B", 8)
    why = headline_reason(prediction)
    if why:
        line(why, 10, color=(150, 0, 0))
    if prediction.refer:
        pdf.set_fill_color(255, 228, 200)
        pdf.set_font("Helvetica", "B", 11)
        pdf.multi_cell(page.epw, 7, _latin("REFER TO A HUMAN READER"), fill=True, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 9)
        for r in refer_messages(prediction):  # the page's words
            pdf.multi_cell(page.epw, 5, _latin(f"- {r}"), fill=True, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)


def _task_section(page: _Page, res) -> None:
    """One task: its probability table and uncertainty, or why it gives no answer."""
    pdf, line = page.pdf, page.line
    row = task_row(res)
    line(f"{row.title}  ({res.model_version or '-'})", 11, "B", 7)
    if row.read_on:
        line(f"read on {row.read_on}", 9)
    if not res.answered:
        line(row.result + (f". {row.reason}" if row.reason else ""), 10)
        pdf.ln(1)
        return
    pdf.set_font("Helvetica", "", 9)
    with pdf.table(col_widths=(60, 40), width=100, align="LEFT", text_align=("LEFT", "RIGHT")) as table:
        cells = table.row()
        cells.cell("class")
        cells.cell("probability")
        for c, p in zip(res.classes, res.probabilities):
            cells = table.row()
            cells.cell(_latin(class_title(c) + ("  <" if c == res.label else "")))
            cells.cell(f"{p:.3f}")
    u = res.uncertainty
    extra = f", BALD {u['bald']:.3f}" if "bald" in u else ""
    line(
        f"Result {row.result}; entropy {u['entropy']:.3f} nats (normalised {u['entropy_norm']:.2f}), "
        f"margin {u['margin']:.3f}{extra}; slices used {res.n_slices_used}"
        + ("; REFER" if res.refer else "")
        + (f"; {res.note}" if res.note else ""),
        9,
    )
    pdf.ln(1)


def _key_slices(page: _Page, prediction, slices01: np.ndarray, cams: Mapping[int, Any] | None) -> None:
    """Up to three key slices side by side, with their CAM overlays when given."""
    pdf = page.pdf
    pdf.ln(2)
    page.line("Key slices" + (" with heat maps" if cams else ""), 11, "B", 7)
    size = min(58.0, (page.epw - 8) / 3)
    x0, y = pdf.l_margin, pdf.get_y()
    if y + size + 12 > pdf.h - pdf.b_margin:
        pdf.add_page()
        y = pdf.get_y()
    for j, idx in enumerate(prediction.key_slices[:3]):
        sl = np.asarray(slices01[idx], dtype=np.float32)
        sl = sl[0] if sl.ndim == 3 else sl
        c = (cams or {}).get(idx)
        img = overlay(sl, c.heatmap) if c is not None else np.repeat(to_uint8(sl)[..., None], 3, 2)
        x = x0 + j * (size + 4)
        pdf.image(_png(img), x=x, y=y, w=size, h=size)
        pdf.set_xy(x, y + size + 1)
        pdf.set_font("Helvetica", "", 7)
        cap = slice_label(idx, prediction.n_slices or len(slices01)) + (
            f": {c.method} for {class_title(c.class_name)}" if c is not None else ""
        )
        pdf.cell(size, 4, _latin(cap))
    pdf.set_xy(pdf.l_margin, y + size + 7)


def _model_cards(line, prediction, cards: Mapping[str, Mapping]) -> None:
    """A summary of each model card: version, metrics, held-out results, intended use, limitations."""
    line("Models", 11, "B", 7)
    for task, card in cards.items():
        card = ModelCard.coerce(card)
        line(
            f"{task_title(task)}: {task}@{card.version or '?'} - {card.architecture or '?'}; "
            f"metrics: {_card_metrics(card)}",
            9,
            "B",
        )
        summary = results_summary(card)
        if summary:
            line("Held-out results: " + " ".join(summary), 8)
        res = prediction.tasks.get(task)
        if res is not None and res.status == NOT_VALIDATED:  # its use and limits do not apply
            line(f"Not validated: {res.note}", 8)
            continue
        if card.intended_use:
            line(f"Intended use: {card.intended_use}", 8)
        if card.limitations:
            line("Limitations: " + "; ".join(card.limitations), 8)


def _technical_details(line, prediction) -> None:
    """Device, precision, input statistics, the notes and the thresholds: for the engineer, last."""
    grey = (90, 90, 90)
    ood = prediction.ood or {}
    precision = ", ".join(f"{t} {p}" for t, p in prediction.precision.items()) or "-"
    line("Technical details", 9, "B", 6)
    line(
        f"Device {prediction.device}; precision {precision}; "
        f"{prediction.timings_ms.get('total', 0.0) / 1e3:.2f} s; input check score {ood.get('score', 0):.2f}"
        + (f", energy {ood['energy']:.2f}" if "energy" in ood else ""),
        7,
        color=grey,
    )
    for n in prediction.notes:
        line(f"Note: {n}", 7, color=grey)
    line(thresholds_text(), 7, color=grey)
