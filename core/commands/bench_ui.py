"""`python -m core bench-ui [--pacs] [--json [PATH]]`: what a user of the app feels, measured in a
real browser (Playwright on Debian's chromium) against the app started as `make run` does (sign-in
off, a throwaway home, the shipped models, the CPU): process start -> page ready, first upload ->
verdict, warm upload -> verdict for other uploads in the same session (median), and the server's
CPU while a tab is open and nothing happens. `--pacs` adds "Open from PACS" -> verdict for a series
in a throwaway Orthanc, in-process (`core.pacs.open_study` + the cascade) and in the browser. The
scan is the committed TCIA volume stretched to 155 slices (or --volume)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from unittest import mock

from core.commands import one_line
from core.perf import browser, proc
from core.tasks import TASKS

IDLE_LIMIT = 0.02  # "idle server CPU ~ 0": at most 2% of one core
# (result key, row label, target in the result's unit or None, unit)
ROWS = [
    ("start_to_ready_s", "app start -> page ready", None, "s"),
    ("first_upload_s", "first upload -> verdict", 10.0, "s"),
    ("start_to_first_verdict_s", "app start -> first verdict (upload when ready)", 10.0, "s"),
    ("warm_upload_s", "warm upload -> verdict (median)", 1.5, "s"),
    ("idle_cpu_cores", "idle server CPU, tab open (cores)", IDLE_LIMIT, "cores"),
    ("pacs_in_process_warm_s", "PACS open -> verdict, in-process warm (median)", 3.0, "s"),
    ("pacs_browser_warm_s", "PACS open -> verdict, browser warm (median)", 3.0, "s"),
]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench-ui",
        help="upload -> verdict, start-up, idle CPU and PACS -> verdict in a real browser",
        description=__doc__.split("\n", 1)[1],
    )
    p.add_argument("--volume", type=Path, help="a 3D NIfTI volume (default: the committed TCIA one)")
    p.add_argument("--slices", type=int, default=155, help="resample the volume to this many slices (0: as is)")
    p.add_argument("--repeats", type=int, default=3, help="warm uploads (and PACS opens) after the first")
    p.add_argument("--idle-seconds", type=float, default=10.0, help="window of the idle CPU measurement")
    p.add_argument("--pacs", action="store_true", help="also time Open from PACS (starts a throwaway Orthanc)")
    p.add_argument("--no-browser", action="store_true", help="only what needs no browser (the in-process PACS path)")
    p.add_argument("--device", default="cpu", help="NEUROGRADE_DEVICE of the app (default: cpu)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds any one step may take")
    p.add_argument("--screenshot", type=Path, help="where to save the page when a browser step fails")
    p.add_argument("--json", nargs="?", const="-", metavar="PATH", help="write the numbers as JSON (to PATH or stdout)")
    p.set_defaults(func=run)


# --------------------------------------------------------------------------------- results
def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def targets(res: dict) -> dict[str, bool]:
    """{row label: met} for every row with a target and a value."""
    return {label: res[key] <= limit for key, label, limit, _ in ROWS if limit is not None and res.get(key) is not None}


def table(res: dict) -> str:
    """The results as a text table with the targets."""
    lines = [
        f"NeuroGrade bench-ui: {res['volume']}, device {res['device']}",
        f"{'measure':<48}{'value':>10}  {'target':<10}",
    ]
    met = targets(res)
    for key, label, limit, unit in ROWS:
        value = res.get(key)
        if value is None:
            why = res.get("skipped", {}).get(key)
            if why:
                lines.append(f"{label:<48}{'-':>10}  skipped: {why}")
            continue
        shown = f"{value:.3f}" if unit == "cores" else f"{value:.2f} s"
        goal = "" if limit is None else (f"~0 (<= {limit:g})" if unit == "cores" else f"<= {limit:g} s")
        verdict = "" if limit is None else ("OK" if met[label] else "MISSED")
        lines.append(f"{label:<48}{shown:>10}  {goal:<14}{verdict}")
    for key, label in (
        ("warm_upload_runs_s", "warm uploads"),
        ("models_s", "models' own time per verdict"),
        ("pacs_in_process_runs", "PACS in-process runs, the first not warm (open + predict)"),
        ("pacs_browser_runs_s", "PACS browser runs, the first not warm"),
    ):
        if res.get(key):
            lines.append(f"  {label}: {_runs(res[key])}")
    if res.get("headline"):
        lines.append(f"  verdict shown: {res['headline']}")
    lines.append(
        f"  load average: start {_loads(res.get('load_start'))}, end {_loads(res.get('load_end'))} "
        f"({os.cpu_count()} CPUs; a busy machine makes every time longer)"
    )
    return "\n".join(lines)


def _runs(runs) -> str:
    if runs and isinstance(runs[0], dict):
        return ", ".join(f"{r['open_s']:.2f} + {r['predict_s']:.2f} = {r['total_s']:.2f} s" for r in runs)
    return ", ".join("-" if r is None else f"{r:.2f} s" for r in runs)


def _loads(loads) -> str:
    return " ".join(f"{v:.2f}" for v in loads) if loads else "?"


def _load_average() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except OSError:
        return None


# ------------------------------------------------------------------------------ measuring
@contextlib.contextmanager
def _orthanc(root: Path, res: dict):
    """A throwaway Orthanc (None, with the reason in res["skipped"], when it cannot start)."""
    from core.pacs.testing import start_orthanc, stop_orthanc  # heavy: pydicom, only for this command

    root.mkdir()
    server, proc_or_reason = start_orthanc(root)
    if server is None:
        res["skipped"].update(pacs_in_process_warm_s=proc_or_reason, pacs_browser_warm_s=proc_or_reason)
        yield None
        return
    try:
        yield server
    finally:
        stop_orthanc(proc_or_reason)


def _pacs_in_process(server, studies, device: str, res: dict) -> None:
    from core.inference import Predictor  # heavy: torch, only for this command
    from core.pacs import connect  # heavy: pydicom, only for this command
    from core.perf.pacs import open_and_predict  # heavy: pydicom, only for this command

    predictor = Predictor.from_refs({t: f"{t}@active" for t in TASKS}, device=device)  # built at app start
    client = connect(server.url, *server.auth)
    runs = [open_and_predict(client, uid, predictor) for _, uid in studies]
    res["pacs_in_process_runs"] = runs
    res["pacs_in_process_warm_s"] = median(r["total_s"] for r in runs[1:])


def _in_browser(server, files, studies, args, res: dict) -> None:
    from core.perf.server import wait_healthy  # heavy: pydicom, only for this command

    res["start_to_healthy_s"] = wait_healthy(server, args.timeout)
    with browser.browser_page(args.timeout, args.screenshot) as page:
        scan = browser.ScanPage(page)
        res["step"] = "opening the app's page"
        scan.open(server.url)
        res["start_to_ready_s"] = scan.ready_at - server.started
        res["step"] = "uploading the first scan"
        res["first_upload_s"] = scan.upload(files[0])
        res["start_to_first_verdict_s"] = res["start_to_ready_s"] + res["first_upload_s"]
        res["headline"] = scan.headline()
        models = [scan.model_seconds()]
        warm = []
        res["step"] = "uploading the warm scans"
        for previous, path in zip(files, files[1:]):
            scan.remove(previous)
            warm.append(scan.upload(path))
            models.append(scan.model_seconds())
        res["warm_upload_runs_s"], res["warm_upload_s"], res["models_s"] = warm, median(warm), models
        res["step"] = "measuring the idle CPU"
        scan.settle()  # the heat maps and the report are drawn after the verdict
        res["idle_cpu_cores"] = proc.idle_cpu(server.proc.pid, args.idle_seconds)
        if studies:
            res["step"] = "opening studies from the PACS in the page"
            scan.choose_pacs()
            runs = [scan.open_from_pacs(patient) for patient, _ in studies]
            res["pacs_browser_runs_s"], res["pacs_browser_warm_s"] = runs, median(runs[1:])


def measure(args, tmp: Path, res: dict) -> dict:
    # imported here, as every command does with its heavy dependencies: `--help` stays fast
    from core.perf.inputs import SOURCE, nifti_files, stretched
    from core.perf.pacs import seed_studies  # heavy: pydicom, only for this command
    from core.perf.server import start_app, stop_app  # heavy: pydicom, only for this command

    res["step"] = "preparing the volume"
    volume = args.volume or SOURCE
    image = stretched(volume, args.slices or None)
    res.update(
        volume=f"{image.shape[2]}-slice volume from {volume.name}",
        device=args.device,
        repeats=args.repeats,
        idle_seconds=args.idle_seconds,
        skipped={},
        load_start=_load_average(),
    )
    files = nifti_files(tmp, 1 + args.repeats, image)
    home = tmp / "home"
    home.mkdir()
    with contextlib.ExitStack() as stack:
        pacs_env, studies = {}, []
        if args.pacs:
            orthanc = stack.enter_context(_orthanc(tmp / "orthanc", res))
            if orthanc is not None:
                res["step"] = "timing the PACS path in-process"
                studies = seed_studies(orthanc, image, 1 + args.repeats)
                with mock.patch.dict(os.environ, NEUROGRADE_HOME=str(home)):  # the app's models, not the user's
                    _pacs_in_process(orthanc, studies, args.device, res)
                pacs_env = {
                    "NEUROGRADE_PACS_URL": orthanc.url,
                    "NEUROGRADE_PACS_USER": orthanc.auth[0],
                    "NEUROGRADE_PACS_PASSWORD": orthanc.auth[1],
                }
        if not args.no_browser:
            res["step"] = "starting the app"
            server = start_app(home, pacs_env, args.device)
            stack.callback(stop_app, server)
            _in_browser(server, files, studies, args, res)
    res.pop("step")
    res["load_end"] = _load_average()
    res["targets_met"] = targets(res)
    return res


def run(args) -> int:
    if not args.no_browser and (why := browser.missing()):
        print(f"error: {why}; or run with --no-browser (with --pacs: the in-process PACS path only)", file=sys.stderr)
        return 2
    if args.no_browser and not args.pacs:
        print("error: --no-browser measures only the in-process PACS path: add --pacs", file=sys.stderr)
        return 2
    if args.volume is not None and not args.volume.is_file():
        print(f"error: no such volume: {args.volume}", file=sys.stderr)
        return 2
    tmp, res = Path(tempfile.mkdtemp(prefix="neurograde-bench-ui-")), {}
    try:
        measure(args, tmp, res)
    except Exception as exc:  # noqa: BLE001 - a step that failed is one line, never a traceback
        print(f"error while {res.get('step', 'starting')}: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        log = tmp / "home" / "app.log"
        if log.exists():
            print("the app's log ends with:\n" + log.read_text(errors="replace")[-1500:], file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        text = json.dumps(res, indent=1, default=float)
        if args.json == "-":
            print(text)
            return 0
        Path(args.json).write_text(text + "\n")
    print(table(res))
    return 0
