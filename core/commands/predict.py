"""`python -m core predict PATH [PATH ...]`: the model's verdict on a scan (or, with --each, on
every file given). Bad input: a message on stderr and exit status 2 (with --each the other inputs
still get their lines)."""
from __future__ import annotations

import os
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="classify a scan: tumour presence, type, grade, with uncertainty",
        description="Run the active models on one scan (a file, folder, zip, or several files of one "
                    "series) and print the verdict. With --each every file (and every file in a "
                    "folder) is an independent input and gets one line.")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--each", action="store_true", help="every file is an independent image/scan")
    p.add_argument("--tasks", default=None,
                   help="comma list (presence,tumor_type,grade): run these whatever the cascade decides")
    p.add_argument("--sequences", default=None, help="channel names of multi-channel input, e.g. t1pre,flair,t1post")
    p.add_argument("--model", action="append", default=[], metavar="TASK@VERSION",
                   help="use this version instead of the active one (repeatable)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16", "int8"])
    p.add_argument("--device", default=None, help="auto | cpu | cuda[:N] | mps (default NEUROGRADE_DEVICE)")
    p.add_argument("--mc-dropout", type=int, default=0, metavar="N", help="MC-dropout passes (BALD)")
    p.add_argument("--allow-ct", action="store_true", help="load CT (it will be flagged as unlike the training data)")
    p.add_argument("--series", default=None, help="SeriesInstanceUID (or index) to load")
    p.add_argument("--every-slice", action="store_true",
                   help="run tumor_type and grade on every slice (default: only on the slices that "
                        "weigh in the verdict; the others get null)")
    p.set_defaults(func=run)


def _expand(paths: list[str]) -> list[str]:
    out: list[str] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file()
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            out += [os.path.join(raw, str(f.relative_to(p))) for f in files]
        else:
            out.append(raw)
    return out


def _text(source: str, pred) -> str:
    lines = [f"{source}: {pred.verdict or 'no prediction'}" + ("  [REFER]" if pred.refer else "")]
    for t, r in pred.tasks.items():
        probs = ", ".join(f"{c} {p:.2f}" for c, p in zip(r.classes, r.probabilities))
        lines.append(f"  {t} ({r.model_version}): {r.label}  [{probs}]  entropy {r.uncertainty['entropy_norm']:.2f}"
                     + ("  refer" if r.refer else ""))
    for why in pred.refer_reasons:
        lines.append(f"  refer: {why}")
    for n in pred.notes:
        lines.append(f"  note: {n}")
    lines.append("  timings ms: " + ", ".join(f"{k} {v:.0f}" for k, v in pred.timings_ms.items()))
    return "\n".join(lines)


def run(args) -> int:
    from core.inference import TASKS, Predictor
    from core.io import VolumeLoadError, load_volume

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    if tasks:
        bad = [t for t in tasks if t not in TASKS]
        if bad:
            print(f"unknown task(s) {', '.join(bad)}; choose from {', '.join(TASKS)}", file=sys.stderr)
            return 2
    sequences = [s.strip() for s in args.sequences.split(",") if s.strip()] if args.sequences else None
    overrides = {}
    for ref in args.model:
        task = ref.partition("@")[0]
        overrides[task] = ref
    needed = tasks or list(TASKS)
    # presence is loaded even when not asked for: it weights the other tasks' slices
    predictor = Predictor.from_active(tasks=TASKS, overrides=overrides, precision=args.precision,
                                      device=args.device, mc_passes=args.mc_dropout)
    if not predictor.models:
        print("no model is available for " + ", ".join(needed) + ": " + "; ".join(predictor.notes), file=sys.stderr)
        return 1
    opts = dict(sequences=sequences, allow_ct=args.allow_ct, series=args.series)

    def one(source, label: str) -> bool:
        try:
            vol = load_volume(source, **opts)
            pred = predictor.predict_volume(vol, tasks=tasks, source=label, every_slice=args.every_slice)
        except (VolumeLoadError, ValueError, OSError) as exc:
            print(f"{label}: {exc}", file=sys.stderr)
            return False
        pred.source = label
        print(pred.to_json() if args.json else _text(label, pred), flush=True)
        return True

    if args.each:
        files = _expand(args.paths)
        if not files:
            print("no input files found", file=sys.stderr)
            return 2
        ok = [one(f, f) for f in files]
        return 0 if all(ok) else 2
    source = args.paths[0] if len(args.paths) == 1 else list(args.paths)
    return 0 if one(source, args.paths[0] if len(args.paths) == 1 else ",".join(args.paths)) else 2
