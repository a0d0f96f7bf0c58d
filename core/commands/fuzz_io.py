"""`python -m core fuzz-io [--n 500] [--seed 0] [--json] [--out FILE]`: load generated hostile
inputs (core.io.hostile) and report how the loader copes.

Each input is loaded in its own forked process (address space capped at --mem-limit-mb, killed
after --timeout seconds), so one input can neither hang the run nor take the machine's memory, and
its peak memory is what the load added: the child's ru_maxrss (from wait4) less the memory it
inherited resident from its parent (a test process with models loaded holds GBs). Reported: outcomes (loaded, VolumeLoadError, traceback = any other
exception, killed), the slowest load, the largest peak memory, and each family's worst case.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from core.io import VolumeLoadError, load_volume
from core.io.hostile import generate


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fuzz-io",
        help="load generated hostile files; count tracebacks, time, memory",
        description=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--n", type=int, default=500, help="number of hostile inputs (default 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds before a load is killed (default 30)")
    p.add_argument(
        "--mem-limit-mb", type=int, default=4096, help="address-space cap of each load's process (default 4096)"
    )
    p.add_argument("--json", action="store_true", help="print the JSON summary")
    p.add_argument("--out", default=None, help="also write the JSON summary here (e.g. research/results/fuzz_io.json)")
    p.set_defaults(func=run)


def _status_bytes(field: str) -> int:
    """A size from /proc/self/status ("VmSize", "VmRSS") in bytes, 0 where unavailable."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) << 10
    except OSError:
        pass
    return 0


def _inherited_address_space() -> int:
    return _status_bytes("VmSize")


def _child(case, scratch: Path, write_fd: int, mem_limit_mb: int) -> None:
    # the address space the forked child inherits (a test process with torch loaded holds GBs of
    # mappings it never touches) plus the budget for this one load
    limit = _inherited_address_space() + (mem_limit_mb << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    inherited_mb = _status_bytes("VmRSS") / 2**20
    start = time.perf_counter()
    try:
        source = case.source(scratch)
        start = time.perf_counter()
        volume = load_volume(source)
        out = {"outcome": "loaded", "shape": list(volume.shape)}
    except VolumeLoadError as exc:
        out = {"outcome": "VolumeLoadError", "message": str(exc)[:300]}
    except BaseException as exc:  # noqa: BLE001 - the thing being measured
        out = {
            "outcome": "traceback",
            "error": f"{type(exc).__name__}: {str(exc)[:200]}",
            "traceback": traceback.format_exc()[-1500:],
        }
    out["seconds"] = time.perf_counter() - start
    out["inherited_mb"] = inherited_mb
    os.write(write_fd, json.dumps(out).encode())
    os.close(write_fd)


def load_in_process(case, scratch: Path, *, timeout: float, mem_limit_mb: int) -> dict:
    """Load one hostile input in a forked child; its outcome, seconds and peak RSS (MB)."""
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(read_fd)
            _child(case, scratch, write_fd, mem_limit_mb)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks, deadline, killed = [], time.monotonic() + timeout, False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            killed = True
            break
        ready, _, _ = select.select([read_fd], [], [], min(left, 1.0))
        if ready:
            chunk = os.read(read_fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    os.close(read_fd)
    _, status, usage = os.wait4(pid, 0)
    peak_mb = usage.ru_maxrss / 1024.0  # Linux: kilobytes
    if killed:
        return {"outcome": "killed", "seconds": timeout, "peak_mb": peak_mb}
    try:
        out = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        out = {}
    if not out:
        sig = -os.waitstatus_to_exitcode(status) if os.WIFSIGNALED(status) else None
        out = {
            "outcome": "crashed",
            "error": f"process ended (signal {sig})"
            if sig
            else f"process ended with status {os.waitstatus_to_exitcode(status)}",
            "seconds": None,
        }
    out["peak_mb"] = max(0.0, peak_mb - out.pop("inherited_mb", 0.0))
    return out


def fuzz(n: int = 500, seed: int = 0, *, timeout: float = 30.0, mem_limit_mb: int = 4096, progress=None) -> dict:
    results = []
    with tempfile.TemporaryDirectory(prefix="ng-fuzz-") as tmp:
        for i, case in enumerate(generate(n, seed)):
            scratch = Path(tmp) / str(i)
            scratch.mkdir()
            r = load_in_process(case, scratch, timeout=timeout, mem_limit_mb=mem_limit_mb)
            r["family"], r["index"] = case.family, i
            results.append(r)
            if progress:
                progress(i + 1, n, r)
    return summarize(results, n=n, seed=seed, timeout=timeout, mem_limit_mb=mem_limit_mb)


def summarize(results: list[dict], **params) -> dict:
    outcomes: dict[str, int] = {}
    for r in results:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    timed = [r for r in results if r.get("seconds") is not None]
    slowest = max(timed, key=lambda r: r["seconds"], default=None)
    biggest = max(results, key=lambda r: r["peak_mb"], default=None)
    families: dict[str, dict] = {}
    for r in results:
        f = families.setdefault(r["family"], {"n": 0, "outcomes": {}, "max_seconds": 0.0, "max_peak_mb": 0.0})
        f["n"] += 1
        f["outcomes"][r["outcome"]] = f["outcomes"].get(r["outcome"], 0) + 1
        f["max_seconds"] = round(max(f["max_seconds"], r.get("seconds") or 0.0), 3)
        f["max_peak_mb"] = round(max(f["max_peak_mb"], r["peak_mb"]), 1)
    bad = [r for r in results if r["outcome"] in ("traceback", "killed", "crashed")]
    return {
        "command": "python -m core fuzz-io " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in params.items()),
        "n_inputs": len(results),
        "outcomes": outcomes,
        "tracebacks": outcomes.get("traceback", 0) + outcomes.get("crashed", 0),
        "killed_over_timeout": outcomes.get("killed", 0),
        "loads_over_10s": sum(1 for r in timed if r["seconds"] > 10) + outcomes.get("killed", 0),
        "max_seconds": round(slowest["seconds"], 3) if slowest else None,
        "max_seconds_family": slowest["family"] if slowest else None,
        "max_peak_mb": round(biggest["peak_mb"], 1) if biggest else None,
        "max_peak_mb_family": biggest["family"] if biggest else None,
        "loads_over_2gb": sum(1 for r in results if r["peak_mb"] > 2048),
        "families": dict(sorted(families.items())),
        "failures": [{k: r.get(k) for k in ("index", "family", "outcome", "error", "traceback")} for r in bad[:20]],
    }


def run(args) -> int:
    def progress(i, n, r):
        if r["outcome"] in ("traceback", "killed", "crashed"):
            print(f"  [{i}/{n}] {r['family']}: {r['outcome']} {r.get('error', '')}", file=sys.stderr)
        elif i % 50 == 0:
            print(f"  [{i}/{n}]", file=sys.stderr)

    out = fuzz(args.n, args.seed, timeout=args.timeout, mem_limit_mb=args.mem_limit_mb, progress=progress)
    text = json.dumps(out, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    if args.json:
        print(text)
    else:
        print(f"{out['n_inputs']} hostile inputs: {out['outcomes']}")
        print(
            f"tracebacks {out['tracebacks']}, over 10 s {out['loads_over_10s']}, slowest "
            f"{out['max_seconds']} s ({out['max_seconds_family']}), peak memory max "
            f"{out['max_peak_mb']} MB ({out['max_peak_mb_family']}), over 2 GB {out['loads_over_2gb']}"
        )
    return 0 if not (out["tracebacks"] or out["loads_over_10s"] or out["loads_over_2gb"]) else 1
