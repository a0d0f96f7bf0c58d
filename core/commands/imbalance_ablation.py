"""`python -m core imbalance-ablation`: the feature-ACGAN class-imbalance study on real features.

Frozen features of a shipped backbone that never saw this task's labels (as al-simulate), a fixed
patient-disjoint test split of patients that backbone never saw, the minority class cut to FRACTION of its patients in the training split only, then
real only / class-weighted / oversampling / ACGAN top-up - balanced accuracy and per-class
sensitivity over seeds (core/research/imbalance.py).

    python -m core imbalance-ablation --task tumor_type --data /work/shared/data/figshare-cemri \\
        --minority meningioma --fraction 0.1 --seeds 3 --json research/results/acgan_tumor_type.json
"""

from __future__ import annotations

import argparse

from core.commands.al_simulate import seeds_arg


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "imbalance-ablation",
        help="ACGAN class-imbalance ablation (research)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", required=True, choices=["grade", "tumor_type", "presence"])
    p.add_argument("--data", default=None, help="data folder (default: the task's folder in NEUROGRADE_DATA_DIR)")
    p.add_argument("--backbone", default=None, help="feature backbone (default: per task, see al-simulate)")
    p.add_argument("--minority", required=True, help="class cut in the training split")
    p.add_argument("--fraction", type=float, default=0.1, help="fraction of the minority's patients kept")
    p.add_argument("--seeds", default="3", help="N (seeds 0..N-1) or a comma list")
    p.add_argument("--head", choices=["linear", "mlp"], default="linear")
    p.add_argument("--head-epochs", type=int, default=60)
    p.add_argument("--gan-epochs", type=int, default=200)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--json", required=True, help="output JSON path")
    p.add_argument("--job", type=int, default=None, help="report to this store job (Research page)")
    p.set_defaults(func=run)


def run(args) -> int:
    # heavy: torch, only for this command
    from core.research.studies import run_acgan_study, run_study_command

    return run_study_command(
        args,
        "imbalance-ablation",
        lambda data, progress: run_acgan_study(
            args.task,
            data,
            minority=args.minority,
            fraction=args.fraction,
            seeds=seeds_arg(args.seeds),
            backbone=args.backbone,
            head=args.head,
            head_epochs=args.head_epochs,
            gan_epochs=args.gan_epochs,
            test_fraction=args.test_fraction,
            on_progress=progress,
        ),
    )
