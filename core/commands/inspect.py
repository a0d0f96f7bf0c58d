"""`python -m core inspect PATH [PATH ...]`: what NeuroGrade sees in a scan file, folder or zip."""

from __future__ import annotations

import json
import sys

from core.io import VolumeLoadError, load_volume


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="load a scan (NIfTI, DICOM file/folder/zip, image) and describe it",
        description="Load a scan and print its shape, spacing, orientation, modality, channels, "
        "DICOM series and warnings. Several PATHs are read as the files of one series.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="file, folder or zip")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--series", default=None, help="SeriesInstanceUID (or index) to load")
    parser.add_argument("--allow-ct", action="store_true", help="load CT series (with a warning)")
    parser.set_defaults(func=run)


def describe(volume) -> dict:
    """The stable JSON description of a loaded volume."""
    from core.io.orient import axcodes  # heavy: pydicom, only for this command

    return {
        "shape": list(volume.shape),
        "spacing": [round(float(s), 6) for s in volume.spacing],
        "orientation": axcodes(volume.affine),
        "source_orientation": volume.meta.get("source_orientation", "unknown"),
        "modality": volume.modality,
        "source_format": volume.source_format,
        "channels": list(volume.channels),
        "active_channel": volume.active_channel,
        "series": volume.series,
        "warnings": list(volume.warnings),
        "meta": volume.meta,
    }


def _text(info: dict) -> str:
    lines = [
        f"format       : {info['source_format']}",
        f"shape (z,y,x): {' x '.join(map(str, info['shape']))}",
        f"spacing (mm) : {' x '.join(f'{s:.4g}' for s in info['spacing'])}",
        f"orientation  : {info['orientation']} (source: {info['source_orientation']})",
        f"modality     : {info['modality']}",
        "channels     : "
        + ", ".join(f"{c}{' (active)' if c == info['active_channel'] else ''}" for c in info["channels"]),
    ]
    if info["series"]:
        lines.append(f"series       : {len(info['series'])} found")
        for s in info["series"]:
            mark = "*" if s.get("selected") else " "
            desc = f" '{s['description']}'" if s.get("description") else ""
            lines.append(
                f"  {mark} #{s['index']} {s['uid']}{desc} {s['modality']} "
                f"{s['n_slices']} slice(s) {s['rows']}x{s['columns']}"
            )
    if info["warnings"]:
        lines.append("warnings     :")
        lines.extend(f"  - {w}" for w in info["warnings"])
    else:
        lines.append("warnings     : none")
    return "\n".join(lines)


def run(args) -> int:
    source = args.paths[0] if len(args.paths) == 1 else list(args.paths)
    series = args.series
    if series is not None and series.isdigit():
        series = int(series)
    try:
        volume = load_volume(source, series=series, allow_ct=args.allow_ct)
    except VolumeLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = describe(volume)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        print(_text(info))
    return 0
