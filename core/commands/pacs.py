"""`python -m core pacs search|pull`: studies from the hospital's PACS over DICOMweb.

The server comes from NEUROGRADE_PACS_URL (or --url), the credentials from NEUROGRADE_PACS_USER and
NEUROGRADE_PACS_PASSWORD only (a password on the command line would stay in the shell history).
In the CLI the study's handle is its StudyInstanceUID: each command is its own session, the UID is
the PACS's key rather than the patient's identity, and nothing is stored.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.commands import predict
from core.config import get_settings

EXIT_PACS = 1


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pacs",
        help="find and pull studies from a PACS over DICOMweb",
        description="Search a PACS (QIDO-RS) and pull a study (WADO-RS) into a folder. Settings: "
        "NEUROGRADE_PACS_URL, NEUROGRADE_PACS_USER, NEUROGRADE_PACS_PASSWORD.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=None, help="DICOMweb root (default NEUROGRADE_PACS_URL)")
    sub = p.add_subparsers(dest="pacs_command", metavar="ACTION", required=True)

    s = sub.add_parser("search", parents=[common], help="list studies (never the patient's name, ID or birth date)")
    s.add_argument("--patient-id", default=None, help="the patient ID to search for")
    s.add_argument("--accession", default=None, help="the accession number to search for")
    s.add_argument("--from", dest="date_from", default=None, metavar="DATE", help="YYYY-MM-DD")
    s.add_argument("--to", dest="date_to", default=None, metavar="DATE", help="YYYY-MM-DD")
    s.add_argument("--limit", type=int, default=50)
    s.add_argument("--json", action="store_true", help="one JSON object per study")
    s.set_defaults(func=search)

    pull = sub.add_parser("pull", parents=[common], help="retrieve a study's image series into a folder")
    pull.add_argument("study", metavar="STUDY_UID", help="the study's UID as `pacs search` prints it")
    pull.add_argument("--out", required=True, type=Path, help="a new or empty folder")
    pull.add_argument(
        "--series",
        action="append",
        default=None,
        metavar="SERIES_UID",
        help="pull only this series (repeatable; default: the study's MR series)",
    )
    pull.add_argument("--predict", action="store_true", help="then run `predict` on the pulled study")
    pull.add_argument("--json", action="store_true", help="with --predict: the verdict as JSON")
    pull.add_argument(
        "--allow-incomplete", action="store_true", help="with --predict: exit 0 even when a task cannot be assessed"
    )
    pull.set_defaults(func=pull_command)


def _client(args):
    from core.pacs import connect, connect_from_settings  # heavy: pydicom, only for this command

    settings = get_settings()
    if args.url:
        return connect(args.url, settings.pacs_user or None, settings.pacs_password or None)
    return connect_from_settings(settings)


def search(args) -> int:
    from core.pacs import PacsError, search_studies  # heavy: pydicom, only for this command

    try:
        studies = search_studies(
            _client(args),
            patient_id=args.patient_id,
            accession=args.accession,
            date_from=args.date_from,
            date_to=args.date_to,
            limit=args.limit,
        )
    except PacsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PACS
    if args.json:
        for st in studies:
            print(
                json.dumps(
                    {
                        "study_uid": st.uid,
                        "date": st.study_date,
                        "modalities": list(st.modalities),
                        "series": st.n_series,
                        "instances": st.n_instances,
                        "description": st.description,
                    }
                )
            )
        return 0
    if not studies:
        print("no study found")
        return 0
    print(f"{'date':<10}  {'modalities':<10}  {'series':>6}  {'images':>6}  {'description':<24}  study (UID)")
    for st in studies:
        print(
            f"{st.study_date or '-':<10}  {','.join(st.modalities) or '-':<10}  {_n(st.n_series):>6}  "
            f"{_n(st.n_instances):>6}  {st.description[:24] or '-':<24}  {st.uid}"
        )
    return 0


def _n(value) -> str:
    return "?" if value is None else str(value)


def pull_command(args) -> int:
    from core.pacs import PacsError, pull_study  # heavy: pydicom, only for this command

    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f"error: {out} is not an empty folder; give a new or empty one.", file=sys.stderr)
        return EXIT_PACS
    try:
        out.mkdir(parents=True, exist_ok=True)
        pulled = pull_study(_client(args), args.study, out, series_uids=args.series)
    except PacsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PACS
    except OSError as exc:
        print(f"error: {out} cannot be written ({exc.strerror or type(exc).__name__}).", file=sys.stderr)
        return EXIT_PACS
    report = sys.stderr if args.predict else sys.stdout  # with --predict, stdout is the verdict
    for s in pulled.series:
        desc = f" '{s.description}'" if s.description else ""
        print(f"{s.folder}: {s.modality}{desc}, {s.n_instances} image(s)", file=report)
    print(f"note: {out} holds the PACS's DICOM files, identifying headers included; delete it when done.", file=report)
    if not args.predict:
        return 0
    return _predict(out, args)


def _predict(folder: Path, args) -> int:
    """The `predict` command's own code path on the pulled folder."""
    parser = argparse.ArgumentParser(prog="python -m core")
    predict.register(parser.add_subparsers())
    argv = ["predict", str(folder)] + ["--json"] * args.json + ["--allow-incomplete"] * args.allow_incomplete
    return predict.run(parser.parse_args(argv))
