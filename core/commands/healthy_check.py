"""`python -m core healthy-check`: do healthy brains come out "no tumour" at every level, and do
tumour volumes still come out "tumour"? The active presence model through the real Predictor on
normal/ volumes, Br35H no_tumor slices, TCGA-LGG locked-test tumour-free slices, TCIA-BTP slices
outside the masks and the tumour volumes; specificity per source and sensitivity, before (any slice
>= threshold) and after (core/inference/slice_votes.py). See core/research/healthy_check.py.

    python -m core healthy-check --json research/results/healthy_check.json
    python -m core healthy-check --model presence@1.1.0 --json -
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.config import get_settings


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "healthy-check",
        help="presence verdict on healthy brains and tumour volumes (before/after)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", default=None, help="the shared data folder (default: NEUROGRADE_DATA_DIR)")
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        help="write the JSON result to this path ('-' or no value: stdout)",
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="presence@VERSION",
        help="the presence model to check (default: the active one)",
    )
    p.add_argument("--precision", default="auto", help="presence model precision (default: auto, as the product)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch  # heavy: torch, only for this command

    from core.inference import Predictor  # heavy: torch, only for this command

    # heavy: torch, only for this command
    from core.research.healthy_check import run_healthy_check, summary_text

    torch.set_num_threads(max(1, args.threads))
    data = Path(args.data) if args.data else get_settings().data_dir
    if not (data / "normal" / "manifest.csv").exists():
        print(f"healthy-check: no normal/ data under {data} (set --data or NEUROGRADE_DATA_DIR)", file=sys.stderr)
        return 2
    ref = args.model or "presence@active"
    if not ref.startswith("presence@"):
        print(f"healthy-check: --model must be presence@VERSION, not {ref!r}", file=sys.stderr)
        return 2
    predictor = Predictor.from_active(tasks=("presence",), overrides={"presence": ref}, precision=args.precision)
    if "presence" not in predictor.models:
        print("healthy-check: no presence model: " + "; ".join(predictor.notes), file=sys.stderr)
        return 2
    res = run_healthy_check(
        data, predictor, on_progress=lambda m: print(m, file=sys.stderr, flush=True), explicit=args.model is not None
    )
    text = json.dumps(res, indent=1)
    if args.json == "-":
        print(text)
    else:
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(text + "\n")
        print(summary_text(res))
    return 0
