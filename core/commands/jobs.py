"""`python -m core jobs ...`: background jobs (training, imports, simulations).

jobs list [--status S] [--kind K] [--json]
jobs show ID [--json]
jobs cancel ID
jobs reap                mark failed the running jobs whose worker process is gone
"""

from __future__ import annotations

import json
import sys

from core.auth import cli_actor
from core.commands import guarded, open_repository


def register(subparsers) -> None:
    parser = subparsers.add_parser("jobs", help="list, show and cancel background jobs", description=__doc__)
    sub = parser.add_subparsers(dest="jobs_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(sys.stderr), 2)[1])

    p = sub.add_parser("list", help="jobs, newest first")
    p.add_argument("--status", default=None)
    p.add_argument("--kind", default=None)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_list)

    p = sub.add_parser("show", help="one job with its log tail")
    p.add_argument("job", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_show)

    p = sub.add_parser("cancel", help="ask a job to stop")
    p.add_argument("job", type=int)
    p.add_argument("--actor", default=None, help="who cancels (default: the OS user)")
    p.set_defaults(func=run_cancel)

    p = sub.add_parser("reap", help="mark failed the running jobs whose process is gone")
    p.set_defaults(func=run_reap)


def _repo():
    return open_repository()  # checks NEUROGRADE_HOME first: a clear message, not a traceback


@guarded
def run_list(args) -> int:
    repo = _repo()
    repo.jobs.reap_dead()
    jobs = repo.jobs.recent(kind=args.kind, status=args.status, limit=args.limit)
    if args.json:
        print(json.dumps([j.to_dict() for j in jobs]))
        return 0
    for j in jobs:
        print(
            f"{j.id:>5}  {j.kind:<12} {j.status:<10} {j.progress * 100:5.1f}%  "
            f"{j.created_at:%Y-%m-%d %H:%M}"
            + ("  (cancel requested)" if j.cancel_requested and j.status == "running" else "")
        )
    if not jobs:
        print("no jobs")
    return 0


@guarded
def run_show(args) -> int:
    from core.store import NotFound  # heavy: sqlalchemy, only for this command

    try:
        job = _repo().jobs.get(args.job)
    except NotFound as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(job.to_dict()))
    else:
        print(f"job {job.id} {job.kind}: {job.status} {job.progress * 100:.1f}%")
        print(f"params: {json.dumps(job.params)}\nmetrics: {json.dumps(job.metrics)}")
        print(job.log_tail)
    return 0


@guarded
def run_cancel(args) -> int:
    ok = _repo().jobs.request_cancel(args.job, actor=cli_actor(args.actor))
    print("cancel requested" if ok else f"job {args.job} has already finished")
    return 0 if ok else 1


@guarded
def run_reap(args) -> int:
    dead = _repo().jobs.reap_dead()
    print(f"marked failed: {dead}" if dead else "no dead jobs")
    return 0
