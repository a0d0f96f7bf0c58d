"""`python -m core zoo ...`: what model versions and architectures exist.

python -m core zoo list [--task TASK] [--json]     every shipped and user version
python -m core zoo archs [--json]                   registered architectures
python -m core zoo compare TASK@VERSION [--champion V] [--json]
                                                   challenger vs champion on a shared locked test split
python -m core zoo promote TASK@VERSION [--force --reason TEXT] [--actor NAME] [--json]
                                                   only if it beats the champion (exit 4 when refused);
                                                   forced or not, only if its weights pass verification
                                                   (sha256) and it has a locked-test score
python -m core zoo rollback TASK [--reason TEXT] [--actor NAME]
                                                   back to the version promoted before the current one
python -m core zoo summarize TASK@VERSION [--write]
                                                   the card's results in sentences, from its metrics
"""

from __future__ import annotations

import argparse
import json
import sys

from core.auth import cli_actor
from core.cards import CardError, ModelCard
from core.training.card_text import results_summary

EXIT_REFUSED = 4  # promotion refused: no better than the champion, unverifiable, or no locked-test score

_HEADLINE_ORDER = ("accuracy", "balanced_accuracy", "macro_f1", "auc", "roc_auc", "ece")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "zoo",
        help="list model versions and architectures",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="zoo_command", metavar="ZOO_COMMAND")
    p_list = sub.add_parser("list", help="every shipped and user model version")
    p_list.add_argument("--task", default=None, help="only this task")
    p_list.add_argument("--json", action="store_true", help="machine-readable output")
    p_archs = sub.add_parser("archs", help="registered architectures")
    p_archs.add_argument("--json", action="store_true", help="machine-readable output")
    p_cmp = sub.add_parser("compare", help="challenger vs champion on the same locked test split")
    p_cmp.add_argument("ref", metavar="TASK@VERSION")
    p_cmp.add_argument("--champion", default=None, help="champion version (default: the active one)")
    p_cmp.add_argument("--json", action="store_true")
    p_pro = sub.add_parser("promote", help="make TASK@VERSION active if it beats the champion")
    p_pro.add_argument("ref", metavar="TASK@VERSION")
    p_pro.add_argument(
        "--force",
        action="store_true",
        help="promote even when it does not beat the champion (never one that fails "
        "verification or has no locked-test score)",
    )
    p_pro.add_argument("--reason", default=None, help="why (required with --force; kept in the audit log)")
    p_pro.add_argument("--actor", default=None, help="who promotes (default: $USER)")
    p_pro.add_argument("--json", action="store_true")
    p_rb = sub.add_parser("rollback", help="back to the version promoted before the current champion")
    p_rb.add_argument("task")
    p_rb.add_argument("--reason", default=None)
    p_rb.add_argument("--actor", default=None, help="who rolls back (default: $USER)")
    p_rb.add_argument("--json", action="store_true")
    p_sum = sub.add_parser("summarize", help="the card's held-out results in sentences, written from its metrics")
    p_sum.add_argument("ref", metavar="TASK@VERSION")
    p_sum.add_argument("--write", action="store_true", help="store them in the card (key results_summary)")
    parser.set_defaults(func=run, _zoo_parser=parser)


def version_rows(task: str | None = None) -> list[dict]:
    """One dict per version: task, version, architecture, active, source, created, classes,
    parent, path, metrics (headline numbers from the card)."""
    from core.zoo import active_version, list_checkpoints  # heavy: torch, only for this command
    from model_zoo import headline_metrics  # heavy: torch, only for this command

    ckpts = list_checkpoints(task)
    active = {t: active_version(t) for t in sorted({c.task for c in ckpts})}
    cards = [ModelCard.of(c) for c in ckpts]
    return [
        {
            "task": c.task,
            "version": c.version,
            "architecture": c.architecture,
            "active": active.get(c.task) == c.version,
            "source": c.source,
            "created": c.created,
            "classes": list(card.classes),
            "parent": card.parent,
            "path": str(c.path),
            "metrics": headline_metrics(card),
        }
        for c, card in zip(ckpts, cards)
    ]


def _headline_text(metrics: dict) -> str:
    def rank(key: str) -> tuple:
        base = key.split("_", 1)[1] if "_" in key else key
        order = _HEADLINE_ORDER.index(base) if base in _HEADLINE_ORDER else len(_HEADLINE_ORDER)
        return (0 if key.startswith("test_") else 1, order, key)

    keys = sorted(metrics, key=rank)[:3]
    return "  ".join(f"{k}={metrics[k]:.3f}" for k in keys) or "-"


def _run_list(args) -> int:
    rows = version_rows(args.task)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not rows:
        print("no model versions found (shipped: model_zoo/checkpoints/, user: NEUROGRADE_HOME/models/)")
        return 0
    header = ("", "task", "version", "architecture", "source", "created", "metrics")
    table = [header] + [
        (
            "*" if r["active"] else "",
            r["task"],
            r["version"],
            r["architecture"],
            r["source"],
            r["created"][:10],
            _headline_text(r["metrics"]),
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)) + "  " + row[-1])
    print("(* = active version)")
    return 0


def _run_archs(args) -> int:
    from model_zoo import get_spec, imagenet_available, list_models  # heavy: torch, only for this command

    rows = []
    for name in list_models():
        s = get_spec(name)
        rows.append(
            {
                "name": name,
                "input_size": s.input_size,
                "in_channels": s.in_channels,
                "cam_layer": s.cam_layer,
                "n_blocks": len(s.blocks),
                "head": list(s.head),
                "imagenet_weights": s.imagenet_weights,
                "imagenet_cached": bool(s.imagenet_weights) and imagenet_available(name),
                "description": s.description,
            }
        )
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for r in rows:
        w = (
            "no ImageNet weights"
            if not r["imagenet_weights"]
            else ("ImageNet cached" if r["imagenet_cached"] else "ImageNet not cached")
        )
        print(f"{r['name']:<16} {r['input_size']:>4}px  {w:<20} {r['description']}")
    return 0


def _split_ref(ref: str) -> tuple[str, str]:
    task, _, version = str(ref).partition("@")
    if not task or not version or version == "active":
        raise ValueError(f"expected TASK@VERSION, got {ref!r}")
    return task, version


def _actor(args) -> str:
    return cli_actor(args.actor)


def _print_comparison(c) -> None:
    print(f"{c.task}: challenger {c.challenger} vs champion {c.champion or '-'}")
    if c.comparable:
        print(f"  split: {c.split} (fingerprint {str(c.fingerprint)[:12]})")
        for r in c.metrics:

            def fmt(v, ci):
                if v is None:
                    return "-"
                return f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and None not in ci else "")

            mark = "*" if r["primary"] else " "
            delta = f"{r['delta']:+.3f}" if r["delta"] is not None else "-"
            print(
                f" {mark}{r['level']:<8}{r['metric']:<18}{fmt(r['challenger'], r['challenger_ci']):<28}"
                f"{fmt(r['champion'], r['champion_ci']):<28}{delta}"
            )
    print(("  BEATS: " if c.beats else "  does not beat: ") + c.reason)


def _run_compare(args) -> int:
    from core.promotion import PromotionError, compare  # heavy: torch, only for this command

    try:
        task, version = _split_ref(args.ref)
        c = compare(task, version, args.champion)
    except (ValueError, PromotionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(c.to_dict(), indent=2, default=str))
    else:
        _print_comparison(c)
    return 0 if c.beats else EXIT_REFUSED


def _run_promote(args) -> int:
    # heavy: torch, only for this command
    from core.promotion import PromotionError, PromotionRefused, promote
    from core.review import refresh_queue_scores  # heavy: torch, only for this command
    from core.store import Store  # heavy: sqlalchemy, only for this command

    try:
        task, version = _split_ref(args.ref)
        store = Store.open()
        res = promote(task, version, _actor(args), force=args.force, reason=args.reason, repo=store)
    except PromotionRefused as exc:
        if args.json:
            print(
                json.dumps(
                    {
                        "promoted": False,
                        "reason": str(exc),
                        "comparison": exc.comparison.to_dict() if exc.comparison else None,
                    },
                    indent=2,
                    default=str,
                )
            )
        elif exc.comparison is not None:
            _print_comparison(exc.comparison)
        print(f"not promoted: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except (ValueError, PromotionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rescore = refresh_queue_scores(res.task, res.version, store)
    if args.json:
        print(json.dumps({"promoted": True, **res.to_dict(), "rescore": rescore}, indent=2, default=str))
    else:
        print(
            f"{res.task}@{res.version} is now active (was {res.previous or '-'})" + (" -- FORCED" if res.forced else "")
        )
    return 0


def _run_rollback(args) -> int:
    from core.promotion import PromotionError, rollback  # heavy: torch, only for this command
    from core.review import refresh_queue_scores  # heavy: torch, only for this command
    from core.store import Store  # heavy: sqlalchemy, only for this command

    try:
        store = Store.open()
        res = rollback(args.task, _actor(args), reason=args.reason, repo=store)
    except PromotionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rescore = refresh_queue_scores(res.task, res.version, store)
    if args.json:
        print(json.dumps({**res.to_dict(), "rescore": rescore}, indent=2, default=str))
    else:
        print(f"{res.task}: rolled back from {res.previous} to {res.version}")
    return 0


def _run_summarize(args) -> int:
    from core.zoo import resolve_ref  # heavy: torch, only for this command

    try:
        ckpt = resolve_ref(args.ref)
        card = ModelCard.of(ckpt)
    except (KeyError, CardError) as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    lines = results_summary(card)
    print("\n".join(lines) if lines else "no held-out metrics in this card")
    if args.write:
        card.replace(results_summary=tuple(lines)).write(ckpt.path)
    return 0


def run(args) -> int:
    cmd = getattr(args, "zoo_command", None)
    if cmd == "summarize":
        return _run_summarize(args)
    if cmd == "compare":
        return _run_compare(args)
    if cmd == "promote":
        return _run_promote(args)
    if cmd == "rollback":
        return _run_rollback(args)
    if cmd == "list":
        return _run_list(args)
    if cmd == "archs":
        return _run_archs(args)
    args._zoo_parser.print_help(sys.stderr)
    return 2
