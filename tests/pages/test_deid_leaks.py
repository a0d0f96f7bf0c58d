"""Planted identifiers (issue 14, item 2): >= 70 names, IDs, dates and file names planted in DICOM
headers (top level, sequences, multi-valued and free-text fields), NIfTI text fields, file names and
zip member names; none may come out in the Scan page's text (AppTest), the PDF, the JSON export,
`predict --json`, the database (cases, items, jobs.log_tail, audit, ...) or the logs.

`leaks()` lists every planted string found; the test prints the count before asserting it is 0.
Short planted strings (2-letter name parts) are searched as whole words."""

import io
import json
import logging
import re
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "io"))
sys.path.insert(0, str(Path(__file__).parent))
import dicom_factory as f  # noqa: E402

BIRTH = "19450317"
# planted in DICOM free text / sequences (beyond dicom_factory.PHI), NIfTI text and file names
EXTRA = {
    "SeriesDescription": "T1\\Quillfeather Rosamund",  # multi-valued: second value a name
    "ImageType": ["ORIGINAL", "PRIMARY", "WALLABYNAME"],
    "Manufacturer": "Snodgrass Imaging Ltd",
    "ManufacturerModelName": "Ferncastle 3T",
    "BodyPartExamined": "BRAIN 17/03/1945",
    "ContrastBolusAgent": "given 1945-03-17",
    "SequenceName": "17 March 1945",
    "ScanOptions": "Li",  # a 2-letter name part alone
    "PatientName": "Li^Bo",  # overrides PHI's: 2-letter parts
    # the free-text names above are the file's own identifiers (held here too): a name found nowhere
    # else in the file cannot be told from a word and is out of reach of token matching
    "PatientBirthName": "Quillfeather^Rosamund",
    "PatientMotherBirthName": "Snodgrass^Wallabyname",
    "OtherPatientNames": "Ferncastle",
}
SEQUENCE_NAMES = ["Thistlewood^Perpetua", "ALTID55501", "Wintergreen^Obadiah"]
NIFTI_TEXT = {
    "descrip": b"Gravesend Ophelia scan",
    "aux_file": b"AUXPHI9981",
    "intent_name": b"INTPHI42",
    "db_name": b"DBPHI77",
}
FILE_NAMES = [
    "Mortensen_Hallvard_scan.zip",
    "Ulfsdottir_Brynja_0001.dcm",
    "Cobblestone_Aurelio_19450317.nii.gz",
    "Pennyworth_Ximena_broken.nii.gz",
    "Yarborough_Cressida.zip",
    "Kestrel_Ignatius.nii",
]
PLANTED = sorted(
    set(
        [s for s in f.PHI_STRINGS if s not in ("19450317",)]
        + [
            BIRTH,
            "Zebrowski",
            "Quentin",
            "Amadeus",
            "Marigold",
            "Quixtown",
            "Vortex",
            "Wombat",
            "Ursula",
            "Barnaby",
            "Ottoline",
            "Ines",
            "Jasper",
            "Kendra",
            "Tobias",
        ]
        + [
            "Quillfeather",
            "Rosamund",
            "WALLABYNAME",
            "Snodgrass",
            "Ferncastle",
            "17/03/1945",
            "1945-03-17",
            "17 March 1945",
            "Li",
            "Bo",
            "Thistlewood",
            "Perpetua",
            "ALTID55501",
            "Wintergreen",
            "Obadiah",
            "Gravesend",
            "Ophelia",
            "AUXPHI9981",
            "INTPHI42",
            "DBPHI77",
        ]
        + [n.split(".")[0] for n in FILE_NAMES]
        + [p for n in FILE_NAMES for p in n.split(".")[0].split("_") if not p.isdigit() and p not in ("scan", "broken")]
    )
)


def leaks(text: str) -> list[str]:
    found = []
    for s in PLANTED:
        pattern = rf"(?<![A-Za-z0-9]){re.escape(s)}(?![A-Za-z0-9])" if len(s) <= 4 else re.escape(s)
        if re.search(pattern, text, re.IGNORECASE):
            found.append(s)
    return found


def _dicom_blobs() -> list[bytes]:
    datasets = f.series_from_image(f.reference_image((16, 16, 6)), phi=True)
    for ds in datasets:
        for keyword, value in EXTRA.items():
            setattr(ds, keyword, value)
        ref = Dataset()
        ref.PatientName = SEQUENCE_NAMES[0]
        ds.ReferencedPatientSequence = Sequence([ref])
        other = Dataset()
        other.PatientID = SEQUENCE_NAMES[1]
        ds.OtherPatientIDsSequence = Sequence([other])
        nested = Dataset()
        nested.PersonName = SEQUENCE_NAMES[2]
        item = Dataset()
        item.ContentSequence = Sequence([nested])
        ds.RequestAttributesSequence = Sequence([item])
    return [f.to_bytes(ds) for ds in datasets]


def _nifti() -> bytes:
    yy, xx = np.mgrid[0:48, 0:40]
    head = ((((yy - 24) / 20.0) ** 2 + ((xx - 20) / 16.0) ** 2) < 1).astype(np.float32)
    data = np.ascontiguousarray(np.stack([head * (100 + 5 * k) for k in range(6)], -1).transpose(1, 0, 2))
    img = nib.Nifti1Image(data, np.diag([1.0, 1.0, 3.0, 1.0]))
    for key, value in NIFTI_TEXT.items():
        img.header[key] = value
    return img.to_bytes()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _page_text(at: AppTest) -> str:
    """Everything the page sent to the browser: the protobuf of every element."""
    out = []

    def walk(node):
        proto = getattr(node, "proto", None)
        if proto is not None:
            out.append(str(proto))
        for child in (getattr(node, "children", None) or {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(out)


def _database_text() -> str:
    from sqlalchemy import LargeBinary, MetaData, select

    from core.store import Store

    repo = Store.open()
    meta = MetaData()
    meta.reflect(repo.engine)
    parts = []
    with repo.engine.connect() as conn:
        for table in meta.sorted_tables:
            cols = [c for c in table.columns if not isinstance(c.type, LargeBinary)]
            for row in conn.execute(select(*cols)):
                parts.append(f"{table.name}: {tuple(row)!r}")
    return "\n".join(parts)


@pytest.fixture
def models(monkeypatch):
    from test_scan_page import MODELS, save_tiny

    monkeypatch.setenv("NEUROGRADE_DEVICE", "cpu")
    for task, (classes, bias, seq) in MODELS.items():
        save_tiny(task, "t1", classes, bias, seq)


def test_no_planted_identifier_leaves_the_app(models, tmp_path, caplog, capsys, pdf_text):
    from core import report, review
    from core.cli import main
    from core.store import Store

    assert len(PLANTED) >= 70, len(PLANTED)
    blobs = _dicom_blobs()
    caplog.set_level(logging.DEBUG)
    caplog.clear()  # pydicom's warnings about the test's own planted values
    assert all(b"Thistlewood" in b and b"Quillfeather" in b for b in blobs)  # really planted
    dicom_zip = _zip({f"{FILE_NAMES[1][:-9]}{i:04d}.dcm": b for i, b in enumerate(blobs)})
    nifti = _nifti()
    assert b"Gravesend" in nifti
    outputs: dict[str, str] = {}

    # 1. the Scan page: a DICOM zip and a NIfTI named after the patient
    for n, upload in enumerate(
        [(FILE_NAMES[0], dicom_zip, "application/zip"), (FILE_NAMES[2], nifti, "application/gzip")]
    ):
        at = AppTest.from_file(str(REPO / "pages" / "scan.py"), default_timeout=120).run()
        at.file_uploader(key="scan_upload").set_value([upload])
        at.run()
        assert not at.exception, at.exception
        outputs[f"page {n}"] = _page_text(at)
        case = at.session_state["_scan_case"]["case"]  # the page's core.case.Case
        pred, volume = case.prediction, case.volume
        outputs[f"json {n}"] = json.dumps(report.build_json(pred, meta=volume.meta), default=str)
        outputs[f"pdf {n}"] = pdf_text(report.build_pdf(pred, meta=volume.meta, compress=False))
        review.send_to_review(Store.open(), volume, pred, actor="Dr Test")

    # 2. predict --json on files named after the patient
    named = tmp_path / "in"
    named.mkdir()
    (named / FILE_NAMES[2]).write_bytes(nifti)
    (named / FILE_NAMES[4]).write_bytes(dicom_zip)
    main(["predict", str(named), "--each", "--json", "--allow-incomplete"])
    outputs["predict --json"] = capsys.readouterr().out

    # 3. queue import --job of a folder: names, a broken file, a zip
    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / FILE_NAMES[2]).write_bytes(nifti)
    (pool / FILE_NAMES[3]).write_bytes(b"\x1f\x8b not really gzip")
    (pool / FILE_NAMES[4]).write_bytes(dicom_zip)
    (pool / FILE_NAMES[5]).write_bytes(gz_free_nifti := nifti)
    repo = Store.open()
    job = repo.jobs.create("import", {"paths": "pool"}, actor="Dr Test")
    main(["queue", "import", str(pool), "--job", str(job), "--json", "--task", "presence"])
    outputs["queue import --json"] = capsys.readouterr().out
    assert repo.jobs.get(job).log_tail, "the import job logged nothing"
    assert gz_free_nifti
    outputs["database"] = _database_text()
    outputs["logs"] = caplog.text

    found = {where: leaks(text) for where, text in outputs.items()}
    found = {k: v for k, v in found.items() if v}
    total = len({s for v in found.values() for s in v})
    print(f"planted {len(PLANTED)} identifiers; leaked {total}: {found}")
    assert total == 0, found
