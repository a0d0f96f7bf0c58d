"""`python -m core evaluate`: re-score a model version on its held-out data, the way its card says.

    python -m core evaluate --model grade@1.0.0 --data ../shared/data/tcga-lgg --split test --json
    python -m core evaluate --model tumor_type@1.0.0 --data ../shared/data/figshare-cemri --fold 1 --json

--split test: the version's model on the locked test patients recorded in the card (the split is
recomputed and its fingerprint checked). --fold F: that CV fold's model (kept beside model.pt) on
fold F's test patients (shipped: fold 1 of tumor_type only). Without --data the card's training
data paths are used (a folder missing here is looked up by name in NEUROGRADE_DATA_DIR).
"""

from __future__ import annotations

import argparse
import json
import sys

from core.commands import model_error_text, model_errors


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="re-score a model version on its held-out split",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="TASK@VERSION or TASK@active")
    p.add_argument("--data", help="data folder(s) (default: those in the card)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--fold", type=int, help="a CV fold (1..k): its fold model on its test patients")
    g.add_argument("--split", choices=["test"], help="the locked test split")
    p.add_argument(
        "--split-of",
        metavar="TASK@VERSION",
        default=None,
        help="with --split test: the locked test split (and data) recorded by ANOTHER version's card, "
        "e.g. to score the champion on a challenger's locked test when their data differ",
    )
    p.add_argument(
        "--record",
        action="store_true",
        help="keep the result in the store as this version's evaluation on that split (promotion "
        "compares versions on a shared split fingerprint; see core.promotion)",
    )
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument(
        "--tta-rotate",
        type=float,
        default=None,
        metavar="DEG",
        help="research: also average views rotated by +DEG and -DEG (the card's metrics do not)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.record and args.split != "test":
        raise SystemExit("evaluate: --record goes with --split test")
    from core.training.evaluation import evaluate  # heavy: torch, only for this command

    try:
        out = evaluate(args.model, args.data, args.fold, args.split, args.n_boot, args.tta_rotate, args.split_of)
    except model_errors() as exc:  # checksum mismatch, unsafe pickle, unknown version: one line
        print(f"evaluate: {model_error_text(exc)}", file=sys.stderr)
        return 2
    if args.record:
        from core.promotion import record_evaluation  # heavy: torch, only for this command

        task, version = out["model"].split("@", 1)
        split = out["evaluated"] + (
            f" ({out['test_patients_in_its_training_data']['n']} of its patients trained on by {out['model']})"
            if out.get("test_patients_in_its_training_data")
            else ""
        )
        record_evaluation(task, version, out["fingerprint"], out["metrics"], split, actor="evaluate")
        out["recorded"] = {"fingerprint": out["fingerprint"], "split": split}
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        print(f"{out['model']} — {out['evaluated']} ({out['n']} slices, {out['n_patients']} patients)")
        if out.get("test_patients_in_its_training_data"):
            t = out["test_patients_in_its_training_data"]
            print(f"  {t['n']} of these {t['of']} patients were in {out['model']}'s training data (optimistic)")
        if out.get("recorded"):
            print(f"  recorded in the store for promotion (split {out['recorded']['fingerprint'][:12]})")
        if out.get("tta_rotations"):
            print(f"  views also rotated by {out['tta_rotations']} degrees: the card's numbers were not")
        for k, v in out["headline"].items():
            ref = out["card"].get(k)
            print(f"  {k:28s} {v if v is None else round(v, 4)!s:>8}   card: {ref if ref is None else round(ref, 4)}")
    return 0
