"""`python -m core transferability`: rank candidate base models for a task BEFORE fine-tuning
(LogME, H-score, LEEP, NCE on frozen features) and validate the ranking against head-only
fine-tuned accuracy (patient-grouped CV) with Kendall / Spearman. See core/research/transfer_study.py.

Candidates: backbone references, comma-separated - TASK@VERSION (zoo), random:ARCH, imagenet:ARCH,
with optional #blockN (features at that depth) and +perseq (each sequence as a grey image).
Default: the other tasks' shipped models (penultimate, block 3, block 4), random vgg19_slim, ImageNet VGG19.

    python -m core transferability --task grade --data /work/shared/data/tcga-lgg \\
        --json research/results/transferability_grade.json
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "transferability",
        help="rank base models by transferability (research)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", required=True, choices=["grade", "tumor_type", "presence"])
    p.add_argument("--data", default=None, help="data folder (default: the task's folder in NEUROGRADE_DATA_DIR)")
    p.add_argument("--candidates", default=None, help="comma-separated backbone references (default: see above)")
    p.add_argument("--folds", type=int, default=4, help="patient-grouped folds of the head-only validation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64, help="input size of random/ImageNet candidates")
    p.add_argument("--max-slices", type=int, default=None, help="cap the data (whole patients)")
    p.add_argument("--no-validate", action="store_true", help="scores only (no fine-tuning check)")
    p.add_argument(
        "--json", nargs="?", const="-", default="-", help="output JSON path ('-' or no value: print to stdout)"
    )
    p.add_argument("--job", type=int, default=None, help="report to this store job (Research page)")
    p.set_defaults(func=run)


def run(args) -> int:
    from core.research.studies import run_study_command  # heavy: torch, only for this command
    from core.research.transfer_study import run_transferability  # heavy: torch, only for this command

    cands = [c.strip() for c in args.candidates.split(",") if c.strip()] if args.candidates else None
    return run_study_command(
        args,
        "transferability",
        lambda data, progress: run_transferability(
            args.task,
            data,
            cands,
            folds=args.folds,
            seed=args.seed,
            size=args.size,
            max_slices=args.max_slices,
            validate=not args.no_validate,
            on_progress=progress,
        ),
    )
