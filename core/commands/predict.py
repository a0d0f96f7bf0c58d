"""`python -m core predict PATH [PATH ...]`: the model's verdict on a scan (or, with --each, on
every file given). Bad input: a message on stderr and exit status 2 (with --each the other inputs
still get their lines). A task that cannot be assessed (its model cannot be loaded or verified, or a
task it needs has no answer): exit status 3 unless --allow-incomplete. With --dicom-out DIR the
result is also written as DICOM (a Structured Report and Secondary Capture key images, in the input's
study for DICOM input, else in a new anonymous study); status 4 when they cannot be written."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from core import preprocess
from core.commands import model_error_text, model_errors
from core.io import VolumeLoadError, load_volume
from core.tasks import TASKS, class_title

EXIT_BAD_INPUT = 2
EXIT_CANNOT_ASSESS = 3  # a task that was run cannot be assessed: the result is incomplete
EXIT_WRITE_FAILED = 4  # --dicom-out: the DICOM results could not be written


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="classify a scan: tumour presence, type, grade, with uncertainty",
        description="Run the active models on one scan (a file, folder, zip, or several files of one "
        "series) and print the verdict. With --each every file (and every file in a "
        "folder) is an independent input and gets one line. Each task has a status: ok, "
        "refer, cannot_assess (its model cannot be loaded or verified, or a task it needs "
        "gave no answer), not_validated (the active model's card does not show it beats "
        "chance: no probabilities) or not_applicable (asked for with --tasks, but no "
        "tumour was detected). Slices are named 'slice k of N' counting from 1; in the "
        "JSON, slices[i].index and key_slices count from 0 and slices[i].number and "
        "key_slice_numbers from 1. Exit status: 0 done, 1 no model at all, 2 bad input, "
        "3 a task cannot be assessed (see --allow-incomplete), 4 the --dicom-out files "
        "could not be written.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--each", action="store_true", help="every file is an independent image/scan")
    p.add_argument(
        "--tasks", default=None, help="comma list (presence,tumor_type,grade): run these whatever the cascade decides"
    )
    p.add_argument("--sequences", default=None, help="channel names of multi-channel input, e.g. t1pre,flair,t1post")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="TASK@VERSION",
        help="use this version instead of the active one (repeatable)",
    )
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16", "int8"])
    p.add_argument("--device", default=None, help="auto | cpu | cuda[:N] | mps (default NEUROGRADE_DEVICE)")
    p.add_argument("--mc-dropout", type=int, default=0, metavar="N", help="MC-dropout passes (BALD)")
    p.add_argument("--allow-ct", action="store_true", help="load CT (it will be flagged as unlike the training data)")
    p.add_argument("--series", default=None, help="SeriesInstanceUID (or index) to load")
    p.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="exit 0 even when a task cannot be assessed (default: exit status 3)",
    )
    p.add_argument(
        "--every-slice",
        action="store_true",
        help="run tumor_type and grade on every slice (default: only on the slices that "
        "weigh in the verdict; the others get null)",
    )
    p.add_argument(
        "--dicom-out",
        default=None,
        metavar="DIR",
        help="also write the result as DICOM into DIR: a Structured Report and Secondary "
        "Capture key images with heat maps (research use, not for diagnosis), in the "
        "input's study for DICOM input, else in a new anonymous study; with --each one "
        "sub-folder per input (001, 002, ...)",
    )
    p.set_defaults(func=run)


def _expand(paths: list[str]) -> list[str]:
    out: list[str] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(
                f
                for f in p.rglob("*")
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
            out += [os.path.join(raw, str(f.relative_to(p))) for f in files]
        else:
            out.append(raw)
    return out


def _text(source: str, pred) -> str:
    # heavy: torch, only for this command
    from core.inference.verdict import headline, headline_reason, refer_messages, slice_label, task_rows

    status = {"refer": "  [REFER]", "cannot_assess": "  [CANNOT ASSESS]"}.get(pred.status, "")
    why = headline_reason(pred)
    lines = [f"{source}: {headline(pred)[0]}" + (f" ({why})" if why else "") + status]
    for row, r in zip(task_rows(pred), pred.tasks.values()):
        text = f"  {row.title} ({r.model_version or '-'}): {row.result}"
        if r.answered:
            probs = ", ".join(f"{class_title(c)} {p:.2f}" for c, p in zip(r.classes, r.probabilities))
            text += f"  [{probs}]  entropy {r.uncertainty['entropy_norm']:.2f}" + (
                f"  read on {row.read_on}" if row.read_on else ""
            )
        lines.append(text + f"  {row.status_title}" + (f": {row.reason}" if row.reason else ""))
    if pred.key_slices:
        lines.append("  key slices: " + ", ".join(slice_label(k, pred.n_slices) for k in pred.key_slices))
    for why in refer_messages(pred):
        lines.append("  refer: " + why)
    for n in pred.notes:
        lines.append(f"  note: {n}")
    lines.append("  timings ms: " + ", ".join(f"{k} {v:.0f}" for k, v in pred.timings_ms.items()))
    return "\n".join(lines)


def run(args) -> int:
    from core.inference import Predictor  # heavy: torch, only for this command
    from core.report import build_json  # heavy: torch, only for this command

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    if tasks:
        bad = [t for t in tasks if t not in TASKS]
        if bad:
            print(f"unknown task(s) {', '.join(bad)}; choose from {', '.join(TASKS)}", file=sys.stderr)
            return EXIT_BAD_INPUT
    sequences = [s.strip() for s in args.sequences.split(",") if s.strip()] if args.sequences else None
    overrides = {}
    for ref in args.model:
        task = ref.partition("@")[0]
        overrides[task] = ref
    needed = tasks or list(TASKS)
    # presence is loaded even when not asked for: it weights the other tasks' slices
    try:
        predictor = Predictor.from_active(
            tasks=TASKS, overrides=overrides, precision=args.precision, device=args.device, mc_passes=args.mc_dropout
        )
    except model_errors() as exc:  # e.g. --precision int8 with an altered or unsafe calibration
        print(f"error: {model_error_text(exc)}", file=sys.stderr)
        return 1
    if not predictor.models and not predictor.unavailable:
        print("no model is available for " + ", ".join(needed) + ": " + "; ".join(predictor.notes), file=sys.stderr)
        return 1
    opts = dict(sequences=sequences, allow_ct=args.allow_ct, series=args.series)
    dicom_dir = Path(args.dicom_out) if args.dicom_out else None

    # File names can name the patient: the JSON (and anything built from the prediction) carries a
    # pseudonym ("file 2 of 5"); only the human-readable text on the user's own terminal echoes the
    # path they typed, so they can tell the lines apart.
    def one(source, label: str, pseudonym: str, dicom_dir: Path | None) -> int:
        try:
            vol = load_volume(source, **opts)
            pred = predictor.predict_volume(vol, tasks=tasks, source=pseudonym, every_slice=args.every_slice)
        except (VolumeLoadError, ValueError, OSError) as exc:
            print(f"{label}: {exc if isinstance(exc, VolumeLoadError) else type(exc).__name__}", file=sys.stderr)
            return EXIT_BAD_INPUT
        pred.source = pseudonym
        print(json.dumps(build_json(pred, meta=vol.meta)) if args.json else _text(label, pred), flush=True)
        if dicom_dir is not None:
            try:
                written = _write_dicom(dicom_dir, source, vol, pred, predictor)
            except (ValueError, OSError) as exc:
                print(f"{label}: the DICOM results could not be written ({exc})", file=sys.stderr)
                return EXIT_WRITE_FAILED
            print(f"{label}: {len(written)} DICOM object(s) written to {dicom_dir}", file=sys.stderr)
        if pred.unassessed and not args.allow_incomplete:
            print(
                f"{label}: cannot assess {', '.join(pred.unassessed)} (--allow-incomplete to accept)", file=sys.stderr
            )
            return EXIT_CANNOT_ASSESS
        return 0

    if args.each:
        files = _expand(args.paths)
        if not files:
            print("no input files found", file=sys.stderr)
            return EXIT_BAD_INPUT
        return _worst(
            [
                one(f, f, f"file {k} of {len(files)}", dicom_dir and dicom_dir / f"{k:03d}")
                for k, f in enumerate(files, start=1)
            ]
        )
    source = args.paths[0] if len(args.paths) == 1 else list(args.paths)
    return one(
        source,
        args.paths[0] if len(args.paths) == 1 else ",".join(args.paths),
        "input" if len(args.paths) == 1 else f"input of {len(args.paths)} paths",
        dicom_dir,
    )


def _write_dicom(folder: Path, source, vol, pred, predictor) -> list[Path]:
    """The SR and key images of `pred` in `folder`: in the input's study when it was DICOM (the
    reference is read from the files' headers, held in memory only), else in a new study."""
    # heavy: torch, only for this command
    from core.pacs.dicom_out import dicom_results, key_slice_cams, write_results
    from core.pacs.reference import SourceReference  # heavy: pydicom, only for this command

    if str(vol.source_format).startswith("dicom"):
        loaded = [s["uid"] for s in vol.series if s.get("selected")]  # the series it was read from
        reference = SourceReference.from_files(source, series_uids=loaded)
    else:
        reference = SourceReference.new_study()
    slices01 = preprocess.slices(vol, "axial")
    cards = {t: predictor.models[t].card for t in pred.tasks if t in predictor.models}
    datasets = dicom_results(
        pred,
        reference,
        slices01,
        key_slice_cams(predictor, pred, slices01),
        cards=cards,
        aspect=preprocess.plane_aspect(vol, "axial"),
        patient_orientation=None if vol.source_format == "image" else ("L", "P"),
    )
    return write_results(folder, datasets)


def _worst(codes: list[int]) -> int:
    """Bad input (2) before a write failure (4) before an incomplete result (3) before success (0)."""
    return next((c for c in (EXIT_BAD_INPUT, EXIT_WRITE_FAILED, EXIT_CANNOT_ASSESS) if c in codes), 0)
