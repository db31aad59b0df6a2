"""--devices: one worker process per device writing one dataset, equal to the single process's
to the byte, also when a worker is killed mid-run (tiny models, CPU workers)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from grounded_sam2.errors import SettingsError
from grounded_sam2.parallel import parse_devices
from grounded_sam2.tiny_models import make_tiny_models

from dataset_files import normalized_dataset

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "grounded_sam2.cli"]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.parametrize("spec, expected", [
    ("cpu:2", ["cpu", "cpu"]), ("cpu", ["cpu"]), ("cuda:0,cuda:1", ["cuda:0", "cuda:1"]), (["cuda:0", "cuda:2"],
                                                                                            ["cuda:0", "cuda:2"]),
])
def test_device_specs(spec, expected):
    assert parse_devices(spec) == expected


@pytest.mark.parametrize("spec, message", [
    ("cpu:0", "at least 1"), ("cpu:x", "at least 1"), ("", "no device"), ("cpu,cuda:0", "of one type"),
])
def test_bad_device_specs(spec, message):
    with pytest.raises(SettingsError, match=message):
        parse_devices(spec)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny models, four images and one unreadable file."""
    root = tmp_path_factory.mktemp("parallel")
    florence, sam2 = make_tiny_models(root / "tiny")
    (root / "in").mkdir()
    for i in range(4):
        image = np.zeros((40 + 4 * i, 60, 3), np.uint8)
        image[10:30, 10 + i : 40 + i] = (50 * i, 200, 100)
        cv2.imwrite(str(root / "in" / f"{i}.png"), image)
    (root / "in" / "broken.jpg").write_text("not an image")
    common = ["--ontology", "example", "--florence", florence, "--sam2", sam2, "--no-progress", "--batch-size", "2"]
    return root, [str(a) for a in common]


def label(root, common, output, *extra, **popen):
    args = [*CLI, "label", str(root / "in"), "-o", str(root / output), *common, *extra]
    if popen:
        return subprocess.Popen(args, cwd=ROOT, env=ENV, **popen)
    return subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)


def summary_lines(stdout: str):
    return [line for line in stdout.splitlines() if not line.startswith("dataset:")]


@pytest.fixture(scope="module")
def single(setup):
    """single(fmt): the single-process run of the same configuration (made once per format)."""
    root, common = setup
    runs = {}

    def run(fmt):
        if fmt not in runs:
            runs[fmt] = label(root, common, f"single-{fmt}", "--format", fmt, "--device", "cpu")
            assert runs[fmt].returncode == 1, runs[fmt].stderr  # the broken file is skipped
        return root / f"single-{fmt}", runs[fmt]

    return run


def test_two_cpu_workers_write_the_single_process_dataset(setup, single):
    """YOLO here; the killed-worker test below compares a COCO dataset."""
    root, common, fmt = *setup, "yolo"
    reference, reference_run = single(fmt)
    workers = label(root, common, f"workers-{fmt}", "--format", fmt, "--devices", "cpu:2")
    assert workers.returncode == 1, workers.stderr
    assert summary_lines(workers.stdout) == summary_lines(reference_run.stdout)
    assert normalized_dataset(root / f"workers-{fmt}") == normalized_dataset(reference)


def worker_pids(pid: int):
    """The worker processes the command started (spawned interpreters, not the resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    found = []
    for child in children:
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        except FileNotFoundError:
            continue
        if b"spawn_main" in command and b"resource_tracker" not in command:
            found.append(int(child))
    return found


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the workers through /proc")
def test_a_killed_worker_is_started_again_and_the_dataset_is_the_same(setup, single):
    root, common = setup
    reference, reference_run = single("coco")
    process = label(root, common, "killed", "--format", "coco", "--devices", "cpu:2",
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list((root / "killed").glob(".work/*.json")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    victims = worker_pids(process.pid)
    assert victims and process.poll() is None, "the run ended before a worker could be killed"
    os.kill(victims[0], signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 1, stderr
    assert summary_lines(stdout) == summary_lines(reference_run.stdout)
    assert normalized_dataset(root / "killed") == normalized_dataset(reference)
