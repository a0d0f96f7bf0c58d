"""`python -m core grade-baseline`: is there a grade II/III signal in TCGA-LGG that a simple,
mask-based reader finds? Tumour size and inside/outside intensity ratios per sequence, each
feature's AUC and a logistic regression's patient-level cross-validated AUC
(core/research/grade_baseline.py). A yardstick for the grade CNN, not a product model.

    python -m core grade-baseline --data /work/shared/data/tcga-lgg --json research/results/baseline_grade.json
"""

from __future__ import annotations

import argparse

from core.research.grade_baseline import run_grade_baseline


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "grade-baseline",
        help="mask-based grade signal check on TCGA-LGG (research)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", default="grade", choices=["grade"], help=argparse.SUPPRESS)
    p.add_argument("--data", default=None, help="TCGA-LGG folder (default: tcga-lgg in NEUROGRADE_DATA_DIR)")
    p.add_argument("--folds", type=int, default=4, help="patient-stratified folds")
    p.add_argument("--seeds", type=int, default=20, help="reshufflings of the folds")
    p.add_argument(
        "--json", nargs="?", const="-", default="-", help="output JSON path ('-' or no value: print to stdout)"
    )
    p.add_argument("--job", type=int, default=None, help="report to this store job (Research page)")
    p.set_defaults(func=run)


def run(args) -> int:
    from core.research.studies import run_study_command  # heavy: torch, only for this command

    return run_study_command(
        args,
        "grade-baseline",
        lambda data, progress: run_grade_baseline(data, folds=args.folds, seeds=args.seeds, on_progress=progress),
    )
