"""`python -m core zoo ...`: what model versions and architectures exist.

    python -m core zoo list [--task TASK] [--json]     every shipped and user version
    python -m core zoo archs [--json]                   registered architectures
    python -m core zoo activate TASK VERSION            make a version active (NEUROGRADE_HOME/active.json)
"""
from __future__ import annotations

import argparse
import json
import sys

_HEADLINE_ORDER = ("accuracy", "balanced_accuracy", "macro_f1", "auc", "roc_auc", "ece")


def register(subparsers) -> None:
    parser = subparsers.add_parser("zoo", help="list model versions and architectures",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="zoo_command", metavar="ZOO_COMMAND")
    p_list = sub.add_parser("list", help="every shipped and user model version")
    p_list.add_argument("--task", default=None, help="only this task")
    p_list.add_argument("--json", action="store_true", help="machine-readable output")
    p_archs = sub.add_parser("archs", help="registered architectures")
    p_archs.add_argument("--json", action="store_true", help="machine-readable output")
    p_act = sub.add_parser("activate", help="make TASK@VERSION the active version")
    p_act.add_argument("task")
    p_act.add_argument("version")
    parser.set_defaults(func=run, _zoo_parser=parser)


def version_rows(task: str | None = None) -> list[dict]:
    """One dict per version: task, version, architecture, active, source, created, classes,
    parent, path, metrics (headline numbers from the card)."""
    from model_zoo.checkpoints import active_version, headline_metrics, list_checkpoints

    ckpts = list_checkpoints(task)
    active = {t: active_version(t) for t in sorted({c.task for c in ckpts})}
    return [{
        "task": c.task,
        "version": c.version,
        "architecture": c.architecture,
        "active": active.get(c.task) == c.version,
        "source": c.source,
        "created": c.created,
        "classes": list(c.card.get("classes") or []),
        "parent": c.card.get("parent"),
        "path": str(c.path),
        "metrics": headline_metrics(c.card),
    } for c in ckpts]


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
    table = [header] + [("*" if r["active"] else "", r["task"], r["version"], r["architecture"],
                         r["source"], r["created"][:10], _headline_text(r["metrics"])) for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)) + "  " + row[-1])
    print("(* = active version)")
    return 0


def _run_archs(args) -> int:
    from model_zoo.registry import get_spec, imagenet_available, list_models

    rows = []
    for name in list_models():
        s = get_spec(name)
        rows.append({"name": name, "input_size": s.input_size, "in_channels": s.in_channels,
                     "cam_layer": s.cam_layer, "n_blocks": len(s.blocks), "head": list(s.head),
                     "imagenet_weights": s.imagenet_weights,
                     "imagenet_cached": bool(s.imagenet_weights) and imagenet_available(name),
                     "description": s.description})
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for r in rows:
        w = "no ImageNet weights" if not r["imagenet_weights"] else (
            "ImageNet cached" if r["imagenet_cached"] else "ImageNet not cached")
        print(f"{r['name']:<16} {r['input_size']:>4}px  {w:<20} {r['description']}")
    return 0


def _run_activate(args) -> int:
    from model_zoo.checkpoints import set_active

    try:
        path = set_active(args.task, args.version)
    except (KeyError, ValueError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    print(f"{args.task}@{args.version} is active (recorded in {path})")
    return 0


def run(args) -> int:
    cmd = getattr(args, "zoo_command", None)
    if cmd == "list":
        return _run_list(args)
    if cmd == "archs":
        return _run_archs(args)
    if cmd == "activate":
        return _run_activate(args)
    args._zoo_parser.print_help(sys.stderr)
    return 2
