"""`python -m core train`: train (with patient-grouped cross-validation) and write a model version.

    python -m core train --task tumor_type --data DIR --arch vgg19_slim --strategy full \
        --init random --folds 4 --epochs 14 --img-size 96 --final --output model_zoo/checkpoints --version 1.0.0
    python -m core train --recipe grade --output model_zoo/checkpoints      # a shipped recipe
    torchrun --nproc_per_node=2 -m core train ...                            # DistributedDataParallel

--output DIR writes DIR/<task>/<version>/; without it the version goes to NEUROGRADE_HOME/models.
Progress lines go to stderr; --json prints the model card on stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
import time

from core.cards import ModelCard
from core.training.card_text import results_summary
from core.training.recipes import recipe

_FIT_FLAGS = (
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "label_smoothing",
    "schedule",
    "patience",
    "keep",
    "select_metric",
    "bf16",
    "seed",
    "balance_synthetic",
)
_CFG_FLAGS = (
    "task",
    "data",
    "arch",
    "strategy",
    "init",
    "folds",
    "img_size",
    "final",
    "test_fraction",
    "val_fraction",
    "max_blocks",
    "lr_decay",
    "n_boot",
    "stratify",
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model version (grouped CV, card, checkpoint)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--recipe",
        help="start from a recipe (core.training.recipes: tumor_type, tumor_type-1.2.0, presence, ..., grade)",
    )
    p.add_argument("--task", choices=["presence", "tumor_type", "grade"])
    p.add_argument("--data", help="data folder(s), comma-separated; PATH:N caps a source at ~N slices")
    p.add_argument("--arch")
    p.add_argument(
        "--strategy",
        choices=["head", "blockwise", "full", "top"],
        help="top: the top --max-blocks blocks + head train together, the rest frozen",
    )
    p.add_argument(
        "--init",
        help="random | imagenet | craft | hed | TASK@VERSION (a zoo version) | path to a "
        "state dict (model_zoo.parse_weights; ./NAME for a file named like TASK@VERSION)",
    )
    p.add_argument("--folds", type=int, help="k of the patient-grouped CV (0/1: no CV)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--img-size", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--schedule", choices=["onecycle", "cosine", "constant"])
    p.add_argument("--patience", type=int, help="early stopping on validation (0: off)")
    p.add_argument("--keep", choices=["last", "best"], help="last epoch, or best epoch on validation")
    p.add_argument("--select-metric", choices=["accuracy", "auc", "nll"])
    p.add_argument("--bf16", choices=["auto", "on", "off"])
    p.add_argument("--test-fraction", type=float, help="locked test patients (default 0.2; 0 on Figshare folds)")
    p.add_argument("--val-fraction", type=float)
    p.add_argument(
        "--stratify",
        choices=["label", "source"],
        help="locked test and CV folds stratified by label (default) or by source and label",
    )
    p.add_argument("--max-blocks", type=int, help="block-wise: unfreeze at most this many blocks; top: train this many")
    p.add_argument("--lr-decay", type=float, help="block-wise: lr factor per deeper stage")
    p.add_argument("--n-boot", type=int)
    p.add_argument(
        "--balance-synthetic",
        action="store_true",
        default=None,
        help="head stage: add feature-ACGAN vectors of the minority classes to each training "
        "split (never to validation or test)",
    )
    p.add_argument(
        "--final",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also train the final model on all training folds (--no-final: CV only)",
    )
    p.add_argument(
        "--fold",
        type=int,
        help="pilot: train and score CV fold K only (same split and seed as "
        "the full run), print its held-out metrics; writes no version",
    )
    p.add_argument("--output", help="root folder for <task>/<version>/ (default NEUROGRADE_HOME/models)")
    p.add_argument("--version", help="version name, e.g. 1.0.0 (default: a timestamp)")
    p.add_argument(
        "--activate", action="store_true", default=None, help="write <output>/<task>/ACTIVE with this version"
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--json", action="store_true", default=None, help="print the card as JSON on stdout")
    p.set_defaults(func=run)


def build_config(args):
    from core.training.experiment import TrainConfig  # heavy: torch, only for this command
    from core.training.loop import FitConfig  # heavy: torch, only for this command

    base = recipe(args.recipe) if args.recipe else {}
    for name in _FIT_FLAGS + _CFG_FLAGS + ("version",):
        value = getattr(args, name, None)
        if value is not None:
            base[name] = value
    if not base.get("task") or not base.get("data"):
        raise SystemExit("train: --task and --data are required (or --recipe)")
    fit = FitConfig(**{k: base[k] for k in _FIT_FLAGS if k in base})
    cfg = TrainConfig(fit=fit, **{k: base[k] for k in _CFG_FLAGS if k in base and base[k] is not None})
    return cfg, base.get("version")


def command_line(args=None) -> str:
    """The command as typed (sys.argv), or rebuilt from the parsed arguments when `main()` was
    called in-process with its own argv."""
    world = os.environ.get("WORLD_SIZE")
    prefix = f"torchrun --nproc_per_node={world} -m core" if world and int(world) > 1 else "python -m core"
    argv = sys.argv[1:]
    if (not argv or argv[0] != "train") and args is not None:
        argv = ["train"]
        for key, value in vars(args).items():
            if key in ("func", "command") or value is None:
                continue
            # every on/off flag defaults to None: False can only come from a --no- flag
            flag = ("--no-" if value is False else "--") + key.replace("_", "-")
            argv += [flag] if isinstance(value, bool) else [flag, str(value)]
    return " ".join([prefix] + [shlex.quote(a) for a in argv])


def run(args) -> int:
    import torch  # heavy: torch, only for this command

    from core.training import distributed  # heavy: torch, only for this command
    from core.training.experiment import run as run_experiment  # heavy: torch, only for this command

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, version = build_config(args)
    version = version or dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    device = (
        torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if torch.cuda.is_available() and os.environ.get("NEUROGRADE_DEVICE", "auto") not in ("cpu",)
        else torch.device("cpu")
    )
    info = distributed.init_from_env(device)
    t0 = time.time()

    def progress(row: dict) -> None:
        if info.is_main:
            print(json.dumps({"t": round(time.time() - t0, 1), **row}, default=str), file=sys.stderr, flush=True)

    try:
        result = run_experiment(
            cfg, on_progress=progress, dist=info, device=device, command=command_line(args), only_fold=args.fold
        )
        card = result.card
        if info.is_main and args.fold:
            fold = card.metrics.per_fold[0]
            print(
                json.dumps(
                    {
                        "pilot": f"fold {args.fold}",
                        "command": card.command,
                        "recipe": {k: v for k, v in card.recipe.to_dict().items() if k != "final_train"},
                        "metrics": fold["metrics"],
                        "seconds": fold["train"]["seconds"],
                    },
                    default=str,
                )
            )
        elif info.is_main:
            from core.zoo import save_checkpoint  # heavy: torch, only for this command

            card = card.replace(
                intended_use=INTENDED_USE.get(cfg.task, ""), limitations=tuple(LIMITATIONS.get(cfg.task, []))
            )
            card = card.replace(results_summary=tuple(results_summary(card)))
            folder = save_checkpoint(result.model, card, cfg.task, version, root=args.output)
            for name, data in result.fold_weights.items():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(data)
            if args.activate:
                (folder.parent / "ACTIVE").write_text(version + "\n")
            saved = ModelCard.read(folder)
            progress({"run": "saved", "path": str(folder), "training_time_s": saved.training_time_s})
            if args.json:
                print(json.dumps(saved.to_dict(), indent=2))
        distributed.barrier(info)
    finally:
        distributed.shutdown(info)
    return 0


INTENDED_USE = {
    "presence": "Decision support for research and education: flags which axial MRI slices show a "
    "tumour, to weight slices when the other models aggregate a volume. Not a diagnostic device.",
    "tumor_type": "Decision support for research and education: suggests glioma / meningioma / pituitary "
    "tumour on T1-weighted contrast-enhanced axial-like slices that show a tumour. "
    "Not a diagnostic device; every result needs review by a radiologist.",
    "grade": "Research use: suggests WHO grade II vs III for a lower-grade glioma from tumour slices with "
    "three co-registered sequences (T1 pre-contrast, FLAIR, T1 post-contrast). Not a diagnostic device.",
}
LIMITATIONS = {
    "presence": [
        "Trained on two glioma collections and Figshare tumour slices only; other pathologies, "
        "paediatric scans, CT and post-operative scans were not seen."
    ],
    "tumor_type": [
        "No locked test split on Figshare: the four manifest folds (grouped by pid_family) are the "
        "held-out estimate; the shipped model is trained on all folds (minus a 10% validation split "
        "that fits the temperature); fold 1's CV model ships in folds/ for `evaluate --fold 1`.",
        "One public collection (Figshare CE-MRI: two Chinese hospitals, 2005-2010, T1 post-contrast "
        "slices in axial, coronal and sagittal planes); only three tumour types: a slice with another "
        "tumour or none still gets one of them. Use it on slices the presence model flags.",
        "A width-reduced VGG19-BN trained from scratch on a 2-core CPU (no ImageNet weights here), "
        "below Swati et al.'s 94.8% with ImageNet VGG19.",
    ],
    "grade": ["88 patients (TCGA-LGG): wide confidence intervals; grade II/III only (no grade IV)."],
}
