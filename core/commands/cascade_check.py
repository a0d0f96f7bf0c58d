"""`python -m core cascade-check [--json [PATH]]`: the product's whole verdict on held-out Figshare
patients: share answered without referral, accuracy of those answers, confident wrong verdicts per
case, "no tumour detected" on tumour images. See core/research/cascade_check.py.

    python -m core cascade-check --json research/results/cascade_check.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.config import get_settings


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "cascade-check",
        help="confident wrong verdicts of the whole cascade on held-out patients",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", default=None, help="the shared data folder (default: NEUROGRADE_DATA_DIR)")
    p.add_argument("--json", nargs="?", const="-", default=None, help="write the JSON result here ('-': stdout)")
    p.set_defaults(func=run)


def run(args) -> int:
    from core.inference import Predictor  # heavy: torch, only for this command
    from core.inference.referral import ReferralRule  # heavy: torch, only for this command

    # heavy: torch, only for this command
    from core.research.cascade_check import heldout_images, run_cascade_check, type_fold_model
    from core.zoo import load_checkpoint  # heavy: torch, only for this command

    root = Path(args.data or get_settings().data_dir) / "figshare-cemri"
    if not (root / "manifest.csv").is_file():
        print(f"cascade-check: no figshare-cemri/ under {root.parent}", file=sys.stderr)
        return 2
    presence = load_checkpoint("presence@active")
    final_type = load_checkpoint("tumor_type@active")
    fold_type, fold_density = type_fold_model(final_type)
    predictor = Predictor({"presence": presence, "tumor_type": fold_type})
    tm = predictor.model("tumor_type")
    tm.density, tm.referral = fold_density, ReferralRule.from_card(final_type.card)
    rows = heldout_images(presence.card, root)
    res = run_cascade_check(root, predictor, rows, on_progress=lambda m: print(m, file=sys.stderr, flush=True))
    res.update(
        models={"presence": presence.ref, "tumor_type": f"{final_type.ref} (its fold-1 model)"},
        command="python -m core cascade-check",
    )
    text = json.dumps(res, indent=1)
    if args.json == "-":
        print(text)
        return 0
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(
        f"{res['n_images']} held-out tumour images ({res['n_patients']} patients): {res['coverage']:.1%} answered, "
        f"{res['accuracy_answered']:.1%} of them right; confident wrong {res['confident_wrong']:.1%} of cases; "
        f"'no tumour' {res['no_tumour_verdicts']} ({res['no_tumour_answered']} without referral)"
    )
    return 0
