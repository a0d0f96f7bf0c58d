"""`python -m core bench [--json]`: latency, throughput, memory and FLOP/s of the inference path,
against a naive baseline done the way typical demo apps do it (one slice at a time, fp32, a new
CAM object per slice, gradients through the whole network), and the label agreement of our
precision with fp32. Volumes are generated (24 x 256 x 256 TCIA-sized, 155 x 240 x 240
BraTS-sized); the active shipped models are used when present, else random vgg19_slim weights."""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import resource
import statistics
import time
import tracemalloc

import numpy as np

from core.config import get_settings
from core.io import load_volume
from core.io.volume import Volume
from core.preprocess import model_input, slices

TASKS = ["presence", "tumor_type"]
CAM_SLICES = (12, 14, 16)  # slices of the 24-slice volume timed for Grad-CAM (the lesion's level)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="inference / Grad-CAM latency vs a naive baseline", description=__doc__.split("\n", 1)[1]
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--repeats", type=int, default=3, help="timed runs after warm-up (median)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16", "int8"])
    p.add_argument("--device", default=None)
    p.add_argument(
        "--naive-slices",
        type=int,
        default=24,
        help="slices the naive baseline runs on the 155-slice volume (time extrapolated)",
    )
    p.add_argument(
        "--agreement-images",
        type=int,
        default=200,
        help="real Figshare images for the label-agreement check (0: generated only)",
    )
    p.set_defaults(func=run)


def phantom_volume(n: int, size: int, seed: int = 0):
    """A brain-like volume: an ellipsoid head with texture and a bright lesion in some slices."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[0:n, 0:size, 0:size].astype(np.float32)
    cz, c = (n - 1) / 2, (size - 1) / 2
    r = ((z - cz) / (0.55 * n)) ** 2 + ((y - c) / (0.42 * size)) ** 2 + ((x - c) / (0.36 * size)) ** 2
    head = (r < 1).astype(np.float32)
    vol = head * (300 + 80 * np.cos(y / 7) * np.sin(x / 9)) + head * rng.normal(0, 20, head.shape)
    lesion = ((z - 0.6 * n) / (0.15 * n)) ** 2 + ((y - 0.4 * size) / 20) ** 2 + ((x - 0.6 * size) / 20) ** 2 < 1
    vol[lesion] += 400
    return Volume(array=np.clip(vol, 0, None).astype(np.float32), spacing=(1.0, 1.0, 1.0), affine=np.eye(4))


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _models(precision: str, device):
    """Active shipped models for presence and tumor_type, else random vgg19_slim."""
    import torch  # heavy: torch, only for this command

    from core.inference import Predictor  # heavy: torch, only for this command
    from core.zoo import load_checkpoint  # heavy: torch, only for this command
    from model_zoo import LoadedModel, create, get_spec  # heavy: torch, only for this command

    loaded, used = {}, {}
    for task, classes in (("presence", ["no_tumor", "tumor"]), ("tumor_type", ["glioma", "meningioma", "pituitary"])):
        try:
            lm = load_checkpoint(f"{task}@active")
            used[task] = lm.ref
        except Exception:  # noqa: BLE001 - no checkpoint yet: random weights (timing does not depend on them)
            torch.manual_seed(0)
            spec = get_spec("vgg19_slim")
            lm = LoadedModel(
                model=create("vgg19_slim", len(classes)).eval(),
                spec=spec,
                card={"input": {}},
                classes=classes,
                temperature=1.0,
                task=task,
                version="random",
            )
            used[task] = "vgg19_slim random weights (no shipped checkpoint)"
        loaded[task] = lm
    fast = Predictor(loaded, device=device, precision=precision)
    return fast, used


def _peak_flops(device) -> dict:
    """Estimated peak of this machine: cores x FMA units x lanes x 2 x GHz (fp32); bf16 from the
    ISA (AMX ~16x fp32 per PERF-NOTES, AVX512-BF16 2x)."""
    import torch  # heavy: torch, only for this command

    if device.type == "cuda":
        return {"note": "GPU peak not estimated", "fp32": None, "bf16": None}
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        info = ""
    flags = (
        set(re.findall(r"\b[a-z0-9_]+\b", info.split("flags", 1)[1].split("\n", 1)[0])) if "flags" in info else set()
    )
    ghz = None
    m = re.search(r"@\s*([\d.]+)\s*GHz", info)
    if m:
        ghz = float(m.group(1))
    else:
        mhz = re.findall(r"cpu MHz\s*:\s*([\d.]+)", info)
        ghz = float(mhz[0]) / 1000 if mhz else 2.6
    cores = torch.get_num_threads() or os.cpu_count() or 1
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    fp32 = cores * 2 * lanes * 2 * ghz * 1e9
    if "amx_bf16" in flags:
        bf16, how = fp32 * 16, "AMX-BF16 (PERF-NOTES: ~16x fp32)"
    elif "avx512_bf16" in flags:
        bf16, how = fp32 * 2, "AVX512-BF16 dot products (2x fp32)"
    else:
        bf16, how = fp32, "no native bf16"
    # int8: AVX512-VNNI multiplies 4 int8 pairs per 32-bit lane per FMA slot (4x fp32)
    int8 = fp32 * 4 if "avx512_vnni" in flags else fp32 * 2 if "avx2" in flags else fp32
    return {
        "fp32": fp32,
        "bf16": bf16,
        "int8": int8,
        "ghz": ghz,
        "cores": cores,
        "lanes": lanes,
        "bf16_basis": how,
        "formula": "cores x 2 FMA units x lanes x 2 FLOP x GHz",
    }


class _NaiveBaseline:
    """The checkpoint as loaded (fp32, BatchNorm unfolded), one slice at a time, no channels_last,
    gradients on: the inference path of a typical demo app."""

    def __init__(self, predictor):
        import torch  # heavy: torch, only for this command

        self.device = predictor.device
        self.models = {
            t: copy.deepcopy(predictor.model(t).loaded.model).float().to(memory_format=torch.contiguous_format)
            for t in TASKS
        }
        for m in self.models.values():
            for p in m.parameters():
                p.requires_grad_(True)
        self.specs = {t: predictor.model(t).spec for t in TASKS}
        self.tta = {t: predictor.model(t).tta_flip for t in TASKS}

    def scan(self, vol, limit=None) -> dict:
        """Labels per task of the first `limit` slices (all when None)."""
        import torch  # heavy: torch, only for this command

        sl = slices(vol)
        labels = {t: [] for t in TASKS}
        for i in range(len(sl) if limit is None else min(limit, len(sl))):
            for t in TASKS:
                with torch.no_grad():
                    x = model_input(sl[i], self.specs[t]).to(self.device)
                    out = self.models[t](x)
                    if self.tta[t]:  # the same flip averaging as ours (the card's metrics use it)
                        out = (out + self.models[t](torch.flip(x, dims=[3]))) / 2
                labels[t].append(int(out.argmax(1)))
        return labels

    def cam_seconds(self, image, cam_layer: str) -> float:
        """One Grad-CAM of tumor_type the naive way: a new CAM object, a full backward."""
        from pytorch_grad_cam import GradCAM  # heavy: pytorch-grad-cam, only for this command

        # heavy: pytorch-grad-cam, only for this command
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        model = self.models["tumor_type"]
        layer = model.get_submodule(cam_layer)
        t0 = time.perf_counter()
        with GradCAM(model=model, target_layers=[layer]) as c:
            c(
                input_tensor=model_input(image, self.specs["tumor_type"]).to(self.device),
                targets=[ClassifierOutputTarget(0)],
            )
        return time.perf_counter() - t0


def run(args) -> int:
    import torch  # heavy: torch, only for this command

    t_start = time.perf_counter()
    predictor, used = _models(args.precision, args.device)
    vols = {"tcia_24x256": phantom_volume(24, 256, 1), "brats_155x240": phantom_volume(155, 240, 2)}
    res: dict = {
        "models": used,
        "device": str(predictor.device),
        "precision": predictor.precision,
        "flip_tta": {t: predictor.model(t).tta_flip for t in TASKS},
        "torch_threads": torch.get_num_threads(),
        "notes": list(predictor.notes),
    }
    naive = _NaiveBaseline(predictor)
    predictor.predict_volume(vols["tcia_24x256"], tasks=TASKS)  # warm-up
    naive.scan(vols["tcia_24x256"], limit=2)
    scans = res["scan"] = {name: _time_scan(predictor, naive, vol, args) for name, vol in vols.items()}
    small_slices = slices(vols["tcia_24x256"])
    res["cam"] = _time_cam(predictor, naive, small_slices)
    _add_case_times(scans, res["cam"])
    images, source = _agreement_images(vols, args.agreement_images)
    res["agreement"] = {"source": source, "tasks": _label_agreement(predictor, images)}
    res["flops"] = _flops(predictor, small_slices[:8], scans["brats_155x240"])
    res["memory"] = _memory(predictor, vols["tcia_24x256"])
    res["targets_met"] = _targets(res)
    res["bench_wall_s"] = time.perf_counter() - t_start
    try:
        res["load_average"] = list(os.getloadavg())
    except OSError:
        pass
    if args.json:
        print(json.dumps(res, default=float))
    else:
        _print_summary(res, _reference_precision(predictor))
    return 0


def _reference_precision(predictor) -> str:
    return next(iter(predictor.precision.values()), "fp32")


def _time_scan(predictor, naive: _NaiveBaseline, vol, args) -> dict:
    """Ours: the cascade as the app runs it (tumor_type reads only the slices that weigh in the
    verdict) and, for a same-work comparison, with every slice read by both models; the naive scan
    of a large volume is timed on `--naive-slices` slices and extrapolated."""
    n, reps = vol.shape[0], args.repeats
    predictor.predict_volume(vol, tasks=TASKS)  # warm-up at this size (allocator, batch shapes)
    ours = _median_time(lambda: predictor.predict_volume(vol, tasks=TASKS), reps)
    every = _median_time(lambda: predictor.predict_volume(vol, tasks=TASKS, every_slice=True), reps)
    last = predictor.predict_volume(vol, tasks=TASKS)
    read = sum(s["tumor_type"] is not None for s in last.slices)
    gate_ms = float(
        np.median([predictor.predict_volume(vol, tasks=TASKS).timings_ms.get("gate", 0.0) for _ in range(max(reps, 3))])
    )
    lim = None if n <= 24 else args.naive_slices
    naive_full = _median_time(lambda: naive.scan(vol, lim), 1) * (n / lim if lim else 1)
    return {
        "slices": n,
        "ours_s": ours,
        "ours_every_slice_s": every,
        "naive_s": naive_full,
        "tumor_type_slices_read": read,
        "gate_ms": gate_ms,
        "naive_estimated_from_slices": lim,
        "speedup": naive_full / ours if ours else None,
        "speedup_same_work": naive_full / every if every else None,
        "throughput_slices_per_s": n / ours if ours else None,
    }


def _time_cam(predictor, naive: _NaiveBaseline, sl) -> dict:
    """Grad-CAM: ours (cold = new slice, cache cleared; cached = same again) vs naive (new object,
    full backward)."""
    from core import explain  # heavy: torch, only for this command

    explain.clear_cache()
    explain.cam(predictor, sl[3], "gradcam", 0)  # warm-up
    cold = [explain.cam(predictor, sl[i], "gradcam", 0).ms / 1e3 for i in CAM_SLICES]
    t0 = time.perf_counter()
    cached = explain.cam(predictor, sl[CAM_SLICES[-1]], "gradcam", 0)
    cached_s = time.perf_counter() - t0
    cam_layer = predictor.model("tumor_type").spec.cam_layer
    naive_cam = [naive.cam_seconds(sl[i], cam_layer) for i in CAM_SLICES]
    return {
        "method": "gradcam",
        "ours_cold_s": statistics.median(cold),
        "ours_cached_s": cached_s,
        "cached_hit": cached.cached,
        "naive_s": statistics.median(naive_cam),
        "speedup_cold": statistics.median(naive_cam) / statistics.median(cold),
    }


def _add_case_times(scans: dict, cam: dict) -> None:
    """End-to-end case (scan + CAMs of the 3 key slices), the ratio the page feels."""
    for s in scans.values():
        s["case_ours_s"] = s["ours_s"] + 3 * cam["ours_cold_s"]
        s["case_naive_s"] = s["naive_s"] + 3 * cam["naive_s"]
        s["case_speedup"] = s["case_naive_s"] / s["case_ours_s"]


def _agreement_images(vols: dict, n_real: int) -> tuple[list, str]:
    """Image stacks for the label-agreement check: the generated volumes' slices, plus `n_real`
    Figshare images (256 x 256) when the data is there; and a description of the source."""
    images = [slices(v) for v in vols.values()]
    src = "generated volumes"
    if n_real > 0:
        try:
            import cv2  # heavy: OpenCV, only for this command

            root = get_settings().data_dir / "figshare-cemri"
            rows = list(csv.DictReader(open(root / "manifest.csv", newline="")))
            rows = rows[:: max(1, len(rows) // n_real)][:n_real]
            real = [slices(load_volume(root / r["image"]))[0] for r in rows]
            images.append(np.stack([cv2.resize(im, (256, 256), interpolation=cv2.INTER_AREA) for im in real]))
            src = f"generated volumes + {len(real)} Figshare images"
        except Exception as exc:  # noqa: BLE001
            src += f" (Figshare not used: {type(exc).__name__})"
    return images, src


def _label_agreement(predictor, images: list) -> dict:
    """Per task: labels of our precision identical to fp32, and the largest probability change."""
    from core.inference import softmax  # heavy: torch, only for this command

    agreement = {}
    for t in TASKS:
        m = predictor.model(t)
        same = total = 0
        maxdiff = 0.0
        for arr in images:
            x = model_input(arr, m.spec)
            pf = softmax(m.logits(x), m.temperature)
            p32 = softmax(m.logits(x, fp32=True), m.temperature)
            same += int((pf.argmax(1) == p32.argmax(1)).sum())
            total += len(x)
            maxdiff = max(maxdiff, float(np.abs(pf - p32).max()))
        agreement[t] = {
            "identical_labels_pct": 100.0 * same / max(total, 1),
            "n": total,
            "max_abs_prob_diff": maxdiff,
            "precision": m.precision,
        }
    return agreement


def _flops(predictor, batch, scan: dict) -> dict:
    """FLOP/s: count one batch, scale by the measured every-slice scan time."""
    import torch  # heavy: torch, only for this command
    from torch.utils.flop_counter import FlopCounterMode  # heavy: torch, only for this command

    flops_per_slice = {}
    for t in TASKS:
        m = predictor.model(t)
        x = model_input(batch, m.spec).to(predictor.device)
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            m.fp32(x)
        flops_per_slice[t] = fc.get_total_flops() / len(x) * (2 if m.tta_flip else 1)
    per_slice = sum(flops_per_slice.values())
    peak = _peak_flops(predictor.device)
    achieved = per_slice * scan["slices"] / scan["ours_every_slice_s"]
    naive_achieved = per_slice * scan["slices"] / scan["naive_s"]
    prec = _reference_precision(predictor)
    ref_peak = peak.get(prec if prec in ("bf16", "int8") else "fp32")
    return {
        "per_slice_gflop": {t: v / 1e9 for t, v in flops_per_slice.items()},
        "achieved_gflops": achieved / 1e9,
        "naive_gflops": naive_achieved / 1e9,
        "peak_estimate": peak,
        "fraction_of_peak": (achieved / ref_peak) if ref_peak else None,
        "note": "forward FLOPs of presence + tumor_type on every slice of the 155-slice volume / "
        "the every-slice scan time; preprocessing time is included, so this is a lower "
        "bound on kernel efficiency",
    }


def _memory(predictor, vol) -> dict:
    import torch  # heavy: torch, only for this command

    tracemalloc.start()
    predictor.predict_volume(vol, tasks=TASKS)
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "python_heap_peak_mb_24_slice_scan": py_peak / 2**20,
        "cuda_peak_mb": (torch.cuda.max_memory_allocated() / 2**20) if predictor.device.type == "cuda" else None,
    }


def _targets(res: dict) -> dict:
    scans = res["scan"]
    return {
        "scan_24_s<=2": scans["tcia_24x256"]["ours_s"] <= 2,
        "scan_155_s<=10": scans["brats_155x240"]["ours_s"] <= 10,
        "cam_cold_s<=0.5": res["cam"]["ours_cold_s"] <= 0.5,
        "speedup>=5 (155-slice scan, cascade)": (scans["brats_155x240"]["speedup"] or 0) >= 5,
        "labels>=99.5%": all(a["identical_labels_pct"] >= 99.5 for a in res["agreement"]["tasks"].values()),
        "input gate<=50 ms per volume": all(s["gate_ms"] <= 50 for s in scans.values()),
    }


def _print_summary(res: dict, prec: str) -> None:
    print(f"NeuroGrade bench on {res['device']} ({res['torch_threads']} threads), precision {res['precision']}")
    print(
        "models: "
        + "; ".join(f"{t}: {u}" + (" (flip TTA)" if res["flip_tta"][t] else "") for t, u in res["models"].items())
    )
    print(f"{'':<22}{'ours':>10}{'naive':>10}{'ratio':>8}")
    for name, s in res["scan"].items():
        est = f" (naive from {s['naive_estimated_from_slices']} slices)" if s["naive_estimated_from_slices"] else ""
        print(
            f"{name + ' scan s':<22}{s['ours_s']:>10.3f}{s['naive_s']:>10.3f}{s['speedup']:>7.1f}x{est}; "
            f"tumor_type read {s['tumor_type_slices_read']}/{s['slices']} slices; input gate "
            f"{s['gate_ms']:.0f} ms"
        )
        print(
            f"{name + ' every slice s':<22}{s['ours_every_slice_s']:>10.3f}{s['naive_s']:>10.3f}"
            f"{s['speedup_same_work']:>7.1f}x (same work as naive)"
        )
        print(f"{name + ' +3 CAMs s':<22}{s['case_ours_s']:>10.3f}{s['case_naive_s']:>10.3f}{s['case_speedup']:>7.1f}x")
        print(f"{name + ' slices/s':<22}{s['throughput_slices_per_s']:>10.1f}")
    c = res["cam"]
    print(f"{'Grad-CAM cold s':<22}{c['ours_cold_s']:>10.3f}{c['naive_s']:>10.3f}{c['speedup_cold']:>7.1f}x")
    print(f"{'Grad-CAM cached s':<22}{c['ours_cached_s']:>10.5f}")
    for t, a in res["agreement"]["tasks"].items():
        print(
            f"labels identical to fp32, {t}: {a['identical_labels_pct']:.2f}% of {a['n']} "
            f"(max |dp| {a['max_abs_prob_diff']:.3f}, {a['precision']})"
        )
    f, peak = res["flops"], res["flops"]["peak_estimate"]
    print(
        f"FLOP/s: {f['achieved_gflops']:.1f} GFLOP/s achieved (naive {f['naive_gflops']:.1f}); peak estimate "
        f"fp32 {peak.get('fp32', 0) / 1e9 if peak.get('fp32') else float('nan'):.0f} GFLOP/s, "
        f"bf16 {peak.get('bf16', 0) / 1e9 if peak.get('bf16') else float('nan'):.0f} GFLOP/s "
        f"({peak.get('bf16_basis', '')}), int8 {(peak.get('int8') or 0) / 1e9:.0f} GOP/s; fraction of the "
        f"{prec} peak {f['fraction_of_peak'] or float('nan'):.3f}"
    )
    print(
        f"memory: maxrss {res['memory']['maxrss_mb']:.0f} MB, python heap peak {res['memory']['python_heap_peak_mb_24_slice_scan']:.1f} MB"
    )
    print("targets: " + ", ".join(f"{k} {'OK' if v else 'MISSED'}" for k, v in res["targets_met"].items()))
    if res.get("load_average"):
        print(f"load average during bench: {res['load_average']} (shared machine: ratios matter more than times)")
