"""`python -m core al-simulate`: offline active-learning simulation on frozen-backbone features.

Extracts penultimate features once with a frozen shipped backbone that never saw this task's labels
(default: the presence model; for the 3-sequence grade data each sequence through it as a grey
image - see core.research.studies.default_backbone), draws the fixed test set only from patients
that backbone never saw, keeps the pool labels behind an oracle, queries slices by each strategy in
rounds, scores the test set at each budget, and writes the curves, the full-pool baseline and the
label saving as JSON (protocol in core/research/al_simulation.py).

    python -m core al-simulate --task grade --data /work/shared/data/tcga-lgg \\
        --strategies entropy,margin,least_confidence,bald,coreset,random --seeds 5 \\
        --budgets 0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0 --json research/results/al_grade.json
"""

from __future__ import annotations

import argparse

from core.research.al_simulation import ALConfig


def _floats(text: str) -> list[float]:
    return [float(v) for v in str(text).split(",") if v.strip()]


def seeds_arg(text: str) -> list[int]:
    """ "5" -> seeds 0..4; "0,3,7" -> those seeds."""
    text = str(text).strip()
    return [int(v) for v in text.split(",")] if "," in text else list(range(int(text)))


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "al-simulate",
        help="active-learning simulation (research)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", required=True, choices=["grade", "tumor_type", "presence"])
    p.add_argument("--data", default=None, help="data folder (default: the task's folder in NEUROGRADE_DATA_DIR)")
    p.add_argument("--backbone", default=None, help="feature backbone, e.g. tumor_type@active (default: per task)")
    p.add_argument("--strategies", default="entropy,margin,least_confidence,bald,coreset,random")
    p.add_argument("--seeds", default="5", type=str, help="N (seeds 0..N-1) or a comma list")
    p.add_argument("--budgets", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0")
    p.add_argument("--round-fraction", type=float, default=0.025, help="query batch per round, fraction of the pool")
    p.add_argument("--per-patient-cap", type=int, default=2, help="slices of one patient per round (0: no cap)")
    p.add_argument("--C", type=float, default=0.1, help="inverse L2 strength of the logistic head")
    p.add_argument("--ensemble", type=int, default=8, help="heads in the BALD bootstrap ensemble")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--json", required=True, help="output JSON path")
    p.add_argument("--job", type=int, default=None, help="report to this store job (Research page)")
    p.set_defaults(func=run)


def run(args) -> int:
    # heavy: torch, only for this command
    from core.research.studies import run_al_study, run_study_command

    cfg = ALConfig(
        strategies=tuple(s.strip() for s in args.strategies.split(",") if s.strip()),
        seeds=tuple(seeds_arg(args.seeds)),
        budgets=tuple(_floats(args.budgets)),
        round_fraction=args.round_fraction,
        per_patient_cap=args.per_patient_cap or None,
        C=args.C,
        ensemble=args.ensemble,
        test_fraction=args.test_fraction,
    )
    return run_study_command(
        args,
        "al-simulate",
        lambda data, progress: run_al_study(
            args.task, data, backbone=args.backbone, cfg=cfg, n_boot=args.n_boot, on_progress=progress
        ),
    )
