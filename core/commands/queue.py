"""`python -m core queue ...`: the active-learning review queue from the command line.

queue next --task T [--strategy S] [--k N] [--reviewer R] [--cap C] [--json]
queue label ITEM LABEL [--reviewer NAME] [--task T] [--expect-version V] [--json]
                                               exit 3 on a version conflict (prints current)
queue skip ITEM [--reviewer NAME] [--task T] [--comment TEXT]
queue flag ITEM [--reviewer NAME] --comment TEXT [--task T] [--expect-version V]
(--reviewer, alias --actor: who decides; default: the OS user, as cli:USER)
queue stats [--task T] [--json]
queue refresh --task T [--strategy S] [--model-version V]
queue import PATH ... [--csv FILE] [--task T ...] [--sequences a,b,c] [--job ID] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.active_learning import next_items, refresh_scores
from core.auth import cli_actor
from core.commands import guarded, open_repository
from core.tasks import TASKS, InvalidLabel, check_label

EXIT_CONFLICT = 3
STRATEGY_CHOICES = ("entropy", "margin", "least_confidence", "bald", "random", "coreset")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "queue", help="the review queue: next items, labels, stats, import", description=__doc__, formatter_class=_raw()
    )
    sub = parser.add_subparsers(dest="queue_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(sys.stderr), 2)[1])

    p = sub.add_parser("next", help="the next items to review")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--strategy", default="entropy", choices=STRATEGY_CHOICES)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--reviewer", default=None, help="leave out items this reviewer skipped or read")
    p.add_argument("--cap", type=int, default=2, help="most items per patient (0: no cap)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_next)

    p = sub.add_parser("label", help="save a label (optimistic versioning)")
    p.add_argument("item", type=int)
    p.add_argument("label")
    p.add_argument(
        "--reviewer",
        "--actor",
        dest="reviewer",
        default=None,
        help="who decides (recorded with the label and in the audit; default: the OS user)",
    )
    p.add_argument("--task", default=None, choices=TASKS, help="needed when the item is queued for several tasks")
    p.add_argument(
        "--expect-version", type=int, default=None, help="the version you saw; exit status 3 if it changed since"
    )
    p.add_argument("--comment", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_label)

    p = sub.add_parser("skip", help="skip an item (for this reviewer)")
    p.add_argument("item", type=int)
    p.add_argument(
        "--reviewer",
        "--actor",
        dest="reviewer",
        default=None,
        help="who decides (recorded with the label and in the audit; default: the OS user)",
    )
    p.add_argument("--task", default=None, choices=TASKS)
    p.add_argument("--comment", default=None)
    p.set_defaults(func=run_skip)

    p = sub.add_parser("flag", help="flag an item for a closer look (leaves the queue)")
    p.add_argument("item", type=int)
    p.add_argument(
        "--reviewer",
        "--actor",
        dest="reviewer",
        default=None,
        help="who decides (recorded with the label and in the audit; default: the OS user)",
    )
    p.add_argument("--comment", required=True)
    p.add_argument("--task", default=None, choices=TASKS)
    p.add_argument("--expect-version", type=int, default=None)
    p.set_defaults(func=run_flag)

    p = sub.add_parser("stats", help="progress by status and class")
    p.add_argument("--task", default=None, choices=TASKS)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_stats)

    p = sub.add_parser(
        "refresh", help="score pending items with the active model version (predicting the items it has not seen)"
    )
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--strategy", default="entropy", choices=STRATEGY_CHOICES[:-1])
    p.add_argument("--model-version", default=None, help="default: the task's active version")
    p.set_defaults(func=run_refresh)

    p = sub.add_parser("import", help="bulk-import image folders / volumes into the queue")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--csv", default=None, help="CSV of file, patient id and known label (kept hidden from reviewers)")
    p.add_argument(
        "--task",
        action="append",
        default=None,
        choices=TASKS,
        help="queue the items for this task (repeatable; default: all three)",
    )
    p.add_argument("--plane", default="axial")
    p.add_argument(
        "--sequences", default=None, help="comma-separated channel names, e.g. t1pre,flair,t1post for TCGA slices"
    )
    p.add_argument("--keep-blank", action="store_true", help="queue blank slices too")
    p.add_argument("--job", type=int, default=None, help="report progress to this job id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_import)


def _raw():
    return argparse.RawDescriptionHelpFormatter


def _repo():
    return open_repository()  # checks NEUROGRADE_HOME first: a clear message, not a traceback


def _task_of(repo, item: int, task: str | None) -> str:
    if task:
        return task
    from sqlalchemy import select  # heavy: sqlalchemy, only for this command

    from core.store.models import QueueEntry  # heavy: sqlalchemy, only for this command

    with repo.session() as s:
        tasks = s.scalars(select(QueueEntry.task).where(QueueEntry.item_id == item)).all()
    if len(tasks) == 1:
        return tasks[0]
    raise SystemExit(f"item {item} is queued for {sorted(tasks) or 'no task'}: say which with --task")


@guarded
def run_next(args) -> int:
    items = next_items(
        _repo(),
        args.task,
        args.strategy,
        args.k,
        reviewer=args.reviewer,
        per_patient_cap=args.cap or None,
        seed=args.seed,
    )
    if args.json:
        print(json.dumps(items))
    else:
        for it in items:
            score = "-" if it["score"] is None else f"{it['score']:.4f}"
            print(
                f"{it['rank']:>3}  item {it['item_id']:<6} case {it['case_id']:<5} "
                f"slice {it['slice_index']:<4} v{it['version']}  {args.strategy}={score}"
            )
        if not items:
            print(f"nothing pending for {args.task}")
    return 0


def _bad_tasks(tasks) -> str:
    """A message naming the tasks that are not in the task table ("" when all are)."""
    bad = [t for t in tasks if t not in TASKS]
    return f"error: unknown task(s) {', '.join(map(repr, bad))}; choose from {', '.join(TASKS)}" if bad else ""


@guarded
def run_label(args) -> int:
    from core.store import NotFound, VersionConflict  # heavy: sqlalchemy, only for this command

    if args.task:
        try:
            check_label(args.task, args.label)
        except InvalidLabel as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    repo = _repo()
    try:
        task = _task_of(repo, args.item, args.task)
        version = repo.queue.label(
            args.item, task, args.label, cli_actor(args.reviewer), args.expect_version, comment=args.comment
        )
    except VersionConflict as exc:
        current = exc.current_label.to_dict() if exc.current_label else None
        if args.json:
            print(
                json.dumps(
                    {
                        "conflict": True,
                        "item_id": exc.item_id,
                        "task": exc.task,
                        "expected_version": exc.expected_version,
                        "current_version": exc.current_version,
                        "current_label": current,
                    }
                )
            )
        else:
            print(f"conflict: {exc}", file=sys.stderr)
            print(
                f"current label: {current['value'] if current else None} "
                f"(by {current['reviewer'] if current else '-'}, version {exc.current_version})"
            )
        return EXIT_CONFLICT
    except NotFound as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except InvalidLabel as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(
            json.dumps({"conflict": False, "item_id": args.item, "task": task, "label": args.label, "version": version})
        )
    else:
        print(f"item {args.item} ({task}) = {args.label}, version {version}")
    return 0


@guarded
def run_skip(args) -> int:
    repo = _repo()
    repo.queue.skip(args.item, _task_of(repo, args.item, args.task), cli_actor(args.reviewer), args.comment)
    return 0


@guarded
def run_flag(args) -> int:
    from core.store import VersionConflict  # heavy: sqlalchemy, only for this command

    repo = _repo()
    try:
        repo.queue.flag(
            args.item, _task_of(repo, args.item, args.task), cli_actor(args.reviewer), args.comment, args.expect_version
        )
    except VersionConflict as exc:
        print(f"conflict: {exc}", file=sys.stderr)
        return EXIT_CONFLICT
    return 0


@guarded
def run_stats(args) -> int:
    repo = _repo()
    tasks = [args.task] if args.task else repo.queue.tasks()
    stats = {t: repo.queue.progress(t) for t in tasks}
    if args.json:
        print(json.dumps(stats))
    else:
        for t, s in stats.items():
            classes = ", ".join(f"{k} {v}" for k, v in s["by_class"].items()) or "-"
            print(
                f"{t}: {s['labelled']}/{s['total']} labelled, {s['pending']} pending, "
                f"{s['flagged']} flagged, {s['disputed']} disputed; by class: {classes}"
            )
        if not stats:
            print("the queue is empty")
    return 0


@guarded
def run_refresh(args) -> int:
    from core.review import predict_items  # heavy: torch, only for this command
    from core.zoo import active_version  # heavy: torch, only for this command

    repo = _repo()
    version = args.model_version or active_version(args.task)
    if version is None:
        print(f"error: no model version of {args.task} to score with", file=sys.stderr)
        return 1
    predict = lambda ids: predict_items(repo, args.task, ids, f"{args.task}@{version}")  # noqa: E731
    print(json.dumps(refresh_scores(repo, args.task, args.strategy, version, predict=predict)))
    return 0


@guarded
def run_import(args) -> int:
    from core.store.importer import import_paths  # heavy: sqlalchemy, only for this command

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:  # the user's own terminal: the paths they typed
        print("error: not found: " + ", ".join(missing), file=sys.stderr)
        return 2
    tasks = args.task or ["presence", "tumor_type", "grade"]
    bad = _bad_tasks(tasks)
    if bad:
        print(bad, file=sys.stderr)
        return 2
    repo = _repo()
    seqs = [s.strip() for s in args.sequences.split(",")] if args.sequences else None

    def work(job=None):
        progress = (lambda f, msg: (job.progress(f), job.log(msg))) if job else None
        res = import_paths(
            repo,
            args.paths,
            csv_path=args.csv,
            tasks=tasks,
            plane=args.plane,
            sequences=seqs,
            keep_blank=args.keep_blank,
            progress=progress,
        )
        return res

    if args.job is not None:
        from core.store.jobs import run_job  # heavy: sqlalchemy, only for this command

        holder = {}

        def job_work(job):
            holder["res"] = work(job)
            d = holder["res"].to_dict()
            return {k: d[k] for k in ("cases", "items", "matched_csv_rows", "skipped", "failed")} | {
                "errors": len(d["errors"])
            }

        code = run_job(args.job, job_work, repo)
        res = holder.get("res")
        if res is None:
            return code
    else:
        res = work()
    if args.json:
        print(json.dumps(res.to_dict()))
    else:
        print(
            f"imported {res.cases} cases, {res.items} items for {', '.join(tasks)}"
            + (f"; {res.matched_csv_rows} matched the CSV" if args.csv else "")
        )
        print(res.summary())
        for err, path in zip(res.errors, res.error_paths):  # names only on the terminal, never stored
            print(f"  skipped {err} ({path})", file=sys.stderr)
    if res.stopped:
        print(f"error: {res.stopped}", file=sys.stderr)
    return 0 if (res.cases or not res.errors) and not res.failed else 1
