"""--devices: one worker process per device writing one dataset, equal to the single process's
to the byte, also when a worker is killed mid-run (tiny models, CPU workers)."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from grounded_sam2.errors import SettingsError
from grounded_sam2.parallel import parse_devices

from dataset_files import normalized_dataset
from scale_out import summary_lines, worker_pids


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


def test_two_cpu_workers_write_the_single_process_dataset(label_runs):
    """YOLO here; the killed-worker test below compares a COCO dataset."""
    reference, reference_run = label_runs.single("yolo")
    workers = label_runs.label("workers-yolo", "--format", "yolo", "--devices", "cpu:2")
    assert workers.returncode == 1, workers.stderr
    assert summary_lines(workers.stdout) == summary_lines(reference_run.stdout)
    assert normalized_dataset(label_runs.root / "workers-yolo") == normalized_dataset(reference)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the workers through /proc")
def test_a_killed_worker_is_started_again_and_the_dataset_is_the_same(label_runs):
    reference, reference_run = label_runs.single("coco")
    output = label_runs.root / "killed-worker"
    process = label_runs.label(output.name, "--format", "coco", "--devices", "cpu:2",
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list(output.glob(".work/*.json")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    victims = worker_pids(process.pid)
    assert victims and process.poll() is None, "the run ended before a worker could be killed"
    os.kill(victims[0], signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 1, stderr
    assert summary_lines(stdout) == summary_lines(reference_run.stdout)
    assert normalized_dataset(output) == normalized_dataset(reference)
