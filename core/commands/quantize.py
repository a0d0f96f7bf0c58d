"""`python -m core quantize TASK@VERSION [--data PATHS] [--images N] [--check N]`: int8 calibration.

Runs the version's fp32 model over N seeded images of its own training data (the card's recipe
data, or --data) to record the range of every activation, checks the int8 model against fp32 on
other images of that data (labels identical, largest probability difference), and stores the
observers beside the model (`int8_observers.pt`) with the check in the card (key `int8`). The
Predictor then runs the version in int8 on x86 CPUs (see `core.quantize`).
"""

from __future__ import annotations

import hashlib
import io
import sys

import numpy as np

from core import quantize
from core.cards import ModelCard
from core.commands import model_error_text, model_errors
from core.training.datasets import load_dataset


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "quantize", help="calibrate a model version for int8 CPU inference", description=__doc__.split("\n\n", 1)[1]
    )
    p.add_argument("ref", metavar="TASK@VERSION")
    p.add_argument("--data", default=None, help="data folder(s) (default: the card's recipe data)")
    p.add_argument("--images", type=int, default=256, help="calibration images (default 256)")
    p.add_argument("--check", type=int, default=500, help="other images for the agreement check (default 500)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    import torch  # heavy: torch, only for this command

    from core.inference import TaskModel, softmax  # heavy: torch, only for this command
    from core.training.evaluation import data_for_card  # heavy: torch, only for this command
    from core.training.loop import to_model_input  # heavy: torch, only for this command
    from core.zoo import load_checkpoint, resolve_ref  # heavy: torch, only for this command

    if not quantize.available():
        print("this torch build has no x86 int8 kernels", file=sys.stderr)
        return 2
    try:
        ckpt = resolve_ref(args.ref)
        loaded = load_checkpoint(ckpt)
    except model_errors() as exc:  # checksum mismatch, unsafe pickle, unknown version: one line
        print(f"quantize: {model_error_text(exc)}", file=sys.stderr)
        return 2
    data = data_for_card(ModelCard.of(loaded), args.data)
    try:
        ds = load_dataset(data, loaded.task, loaded.spec.input_size, seed=args.seed)
    except (FileNotFoundError, ValueError) as exc:
        print(f"{data}: {exc}", file=sys.stderr)
        return 2
    order = np.random.default_rng(args.seed).permutation(len(ds))
    cal, check = order[: args.images], order[args.images : args.images + args.check]
    fp32 = TaskModel(loaded, "cpu", precision="fp32")

    def inputs(idx):
        return to_model_input(ds.images[idx], fp32.spec, "cpu", None, None, channels_last=False)

    observers = quantize.calibrate(fp32.fp32, inputs(cal))

    # agreement on images the calibration did not use, run as the Predictor runs them (flip
    # averaging included): the same TaskModel with its model swapped for the int8 one
    x = inputs(check)
    p32 = softmax(fp32.logits(x), fp32.temperature)
    fp32.model = quantize.quantized(fp32.fp32, observers, inputs(cal[:1]))
    p8 = softmax(fp32.logits(x), fp32.temperature)
    same = float((p8.argmax(1) == p32.argmax(1)).mean()) if len(x) else None
    diff = float(np.abs(p8 - p32).max()) if len(x) else None

    buf = io.BytesIO()
    torch.save(observers, buf)
    (ckpt.path / quantize.OBSERVERS_FILE).write_bytes(buf.getvalue())
    int8 = {
        "file": quantize.OBSERVERS_FILE,
        "sha256": hashlib.sha256(buf.getvalue()).hexdigest(),
        "engine": quantize.ENGINE,
        "method": "FX post-training static quantization (default x86 qconfig; first convolution kept in fp32)",
        "calibration": {"data": data, "n_images": int(len(cal)), "seed": args.seed},
        "agreement_with_fp32": {
            "n_images": int(len(check)),
            "identical_labels": same,
            "max_abs_prob_diff": diff,
            "images": "same data, not used for calibration",
        },
        "command": f"python -m core quantize {loaded.ref}" + (f" --data {args.data}" if args.data else ""),
    }
    ModelCard.of(loaded).with_sections(int8=int8).write(ckpt.path)
    print(
        f"{loaded.ref}: int8 calibrated on {len(cal)} images; labels identical to fp32 on "
        f"{len(check)} other images: {100 * (same or 0):.2f}% (max |dp| {diff or 0:.3f})"
    )
    return 0
