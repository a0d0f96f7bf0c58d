"""A throwaway Orthanc with the DICOMweb plugin on free localhost ports, for tests and benchmarks.

`start_orthanc(root)` runs /usr/sbin/Orthanc with a generated configuration (storage under `root`,
HTTP basic authentication on, so the credentials path is exercised) and waits until /system
answers; `stop_orthanc(proc)` ends it. The pytest fixture (tests/pacs/conftest.py) and
`python -m core bench-ui --pacs` share this code. Nothing here is used by the app itself.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import requests
from pydicom.dataset import Dataset

ORTHANC_BIN = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
START_TIMEOUT_S = 15
USER, PASSWORD = "ng-test", "ng-test-secret"


@dataclass(frozen=True)
class Orthanc:
    rest: str  # REST root, e.g. http://127.0.0.1:PORT
    url: str  # DICOMweb root, e.g. http://127.0.0.1:PORT/dicom-web
    auth: tuple[str, str]  # (user, password)
    dicom_port: int

    def upload(self, *items) -> list[str]:
        """POST each DICOM file (a path, bytes, or a pydicom Dataset; lists are walked) to /instances;
        the Orthanc IDs of the stored instances."""
        ids = []
        with requests.Session() as http:
            for data in _dicom_bytes(items):
                r = http.post(f"{self.rest}/instances", data=data, auth=self.auth, timeout=30)
                r.raise_for_status()
                ids.append(r.json()["ID"])
        return ids

    def get(self, path: str):
        """GET a REST resource (e.g. "/studies") as JSON."""
        r = requests.get(f"{self.rest}/{path.lstrip('/')}", auth=self.auth, timeout=30)
        r.raise_for_status()
        return r.json()

    def find_study(self, study_uid: str) -> str | None:
        """Orthanc's ID of the study with this StudyInstanceUID, or None."""
        r = requests.post(f"{self.rest}/tools/lookup", data=study_uid, auth=self.auth, timeout=30)
        r.raise_for_status()
        return next((hit["ID"] for hit in r.json() if hit.get("Type") == "Study"), None)


def _dicom_bytes(items) -> Iterable[bytes]:
    for item in items:
        if isinstance(item, (bytes, bytearray)):
            yield bytes(item)
        elif isinstance(item, (str, Path)):
            yield Path(item).read_bytes()
        elif isinstance(item, Dataset):
            buf = io.BytesIO()
            item.save_as(buf, enforce_file_format=True)
            yield buf.getvalue()
        else:
            yield from _dicom_bytes(item)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_orthanc(root: Path) -> tuple[Orthanc, subprocess.Popen] | tuple[None, str]:
    """(Orthanc, process) or (None, the reason it is unavailable)."""
    binary = shutil.which("Orthanc") or (ORTHANC_BIN if os.access(ORTHANC_BIN, os.X_OK) else None)
    if binary is None:
        return None, "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
    if not Path(DICOMWEB_PLUGIN).exists():
        return None, "Orthanc's DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)"
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "neurograde-test",
        "DicomAet": "NGTEST",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "storage"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [DICOMWEB_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "SaveJobs": False,
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    log = open(root / "orthanc.log", "wb")
    proc = subprocess.Popen([binary, str(root / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT, cwd=root)
    log.close()
    rest = f"http://127.0.0.1:{http_port}"
    server = Orthanc(rest=rest, url=f"{rest}/dicom-web", auth=(USER, PASSWORD), dicom_port=dicom_port)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (root / "orthanc.log").read_text(errors="replace").strip()[-300:]
            return None, f"Orthanc exited at start (status {proc.returncode}): {tail}"
        try:
            if requests.get(f"{rest}/system", auth=server.auth, timeout=1).ok:
                plugins = requests.get(f"{rest}/plugins", auth=server.auth, timeout=5).json()
                if "dicom-web" not in plugins:
                    stop_orthanc(proc)
                    return None, "Orthanc started without its DICOMweb plugin"
                return server, proc
        except requests.RequestException:
            pass
        time.sleep(0.2)
    stop_orthanc(proc)
    return None, f"Orthanc did not answer within {START_TIMEOUT_S} s"


def stop_orthanc(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
