"""`python -m core train-job ID`: the worker of a retraining job created by the Train page.

Reads the job's parameters from the store, fine-tunes on the confirmed review labels and writes a
challenger version (see core/training/job.py). Progress, per-epoch history and a log tail go to the
job row; cancel requests are honoured. Exit status: 0 succeeded, 1 failed, 130 cancelled.

    python -m core train-job 12
    python -m core train-job --create --task tumor_type --strategy head --epochs 3   # create + run here
"""

from __future__ import annotations

import argparse
import json
import sys

from core.auth import cli_actor


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train-job",
        help="run a retraining job (worker of the Train page)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("job", type=int, nargs="?", help="job id (created by the Train page)")
    p.add_argument("--create", action="store_true", help="create the job from the options below, then run it")
    p.add_argument("--task", choices=["presence", "tumor_type", "grade"])
    p.add_argument("--base", default=None, help="base version (default: the active one)")
    p.add_argument("--strategy", choices=["head", "blockwise", "full"], default="head")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--img-size", type=int, default=None)
    p.add_argument("--actor", default=None, help="who starts the run (default: the OS user)")
    p.set_defaults(func=run)


def run(args) -> int:
    from core.store import Store  # heavy: sqlalchemy, only for this command

    # heavy: torch, only for this command
    from core.training.job import create_training_job, run_training_job

    repo = Store.open()
    job_id = args.job
    if args.create:
        if not args.task:
            print("error: --create needs --task", file=sys.stderr)
            return 2
        params = {"task": args.task, "base": args.base, "strategy": args.strategy, "epochs": args.epochs}
        if args.img_size:
            params["img_size"] = args.img_size

        job_id = create_training_job(repo, params, cli_actor(args.actor))
        print(json.dumps({"job": job_id}), flush=True)
    if job_id is None:
        print("error: give a job id (or --create)", file=sys.stderr)
        return 2
    return run_training_job(job_id, repo)
