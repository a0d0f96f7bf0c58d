"""The train command under torchrun: 2 CPU processes (gloo), tiny data; it completes and rank 0
writes the checkpoint."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training._factories import image_folder

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_torchrun_two_cpu_processes_write_one_checkpoint(tmp_path):
    data = image_folder(tmp_path / "blobs", per_class=8, per_patient=2)
    out = tmp_path / "zoo"
    env = {
        **os.environ,
        "NEUROGRADE_HOME": str(tmp_path / "home"),
        "NEUROGRADE_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
    }
    # --standalone: torchrun picks its own free rendezvous port (a port chosen here could be taken
    # by another test before torchrun binds it)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "core",
        "train",
        "--task",
        "tumor_type",
        "--data",
        str(data),
        "--arch",
        "vgg19_slim",
        "--strategy",
        "full",
        "--folds",
        "0",
        "--epochs",
        "1",
        "--img-size",
        "32",
        "--batch-size",
        "4",
        "--n-boot",
        "20",
        "--output",
        str(out),
        "--version",
        "ddp",
        "--threads",
        "1",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = out / "tumor_type" / "ddp"
    card = json.loads((folder / "card.json").read_text())
    assert (folder / "model.pt").is_file()
    assert card["recipe"]["world_size"] == 2
    assert card["command"].startswith("torchrun --nproc_per_node=2 -m core train")
    assert proc.stderr.count('"run": "saved"') == 1  # only rank 0 reports and saves
