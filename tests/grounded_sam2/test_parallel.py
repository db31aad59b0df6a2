"""--devices: one worker process per device writing one dataset, equal to the single process's
to the byte, also when a worker is killed mid-run (tiny models, CPU workers)."""

import collections
import os
import queue
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from grounded_sam2.errors import SettingsError
from grounded_sam2.parallel import WORKER_GROUPS, _Job, _Tasks, parse_devices

from dataset_files import normalized_dataset
from scale_out import command_line, summary_lines, wait_until_written, worker_pids


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


def idle_job(groups: int, workers: int) -> _Job:
    """A parent's job over ``groups`` groups whose ``workers`` workers hold nothing (no process)."""
    job = _Job(SimpleNamespace(groups=[[f"image {k}"] for k in range(groups)]), ["cpu"] * workers)
    for slot in range(workers):
        job.workers[slot], job.holding[slot], job.unpredicted[slot], job.tasks[slot] = None, [], set(), queue.Queue()
    return job


def test_groups_are_handed_out_in_turn_up_to_the_unpredicted_limit():
    assert WORKER_GROUPS == 3
    job, todo = idle_job(10, 2), collections.deque(range(10))
    job._hand_out(todo)
    assert job.holding == {0: [0, 2, 4], 1: [1, 3, 5]} and list(todo) == [6, 7, 8, 9]
    assert [job.tasks[1].get_nowait() for _ in range(3)] == [(1, ["image 1"]), (3, ["image 3"]), (5, ["image 5"])]
    job.unpredicted[1].discard(1)  # worker 1 predicted group 1: it may read one more ahead
    job._hand_out(todo)
    assert job.holding == {0: [0, 2, 4], 1: [1, 3, 5, 6]} and list(todo) == [7, 8, 9]
    small, todo = idle_job(3, 2), collections.deque(range(3))
    small._hand_out(todo)
    assert small.holding == {0: [0, 2], 1: [1]}, "a small input is shared too"


class NeverFilled(queue.Queue):
    """A task queue that fails a test instead of blocking forever."""

    def get(self, block=True, timeout=None):
        assert not (block and self.empty()), "waits on a queue nothing will be put in"
        return super().get(block, timeout)


def test_a_workers_task_queue_gives_groups_without_waiting_when_asked_and_ends_at_none():
    tasks = NeverFilled()
    take = _Tasks(tasks)
    assert take(False) is None, "none yet"
    tasks.put((0, ["a"]))
    tasks.put(None)
    assert take(True) == (0, ["a"])
    assert take(False) is None and take(True) is None, "ended: no waiting for more"


def test_two_cpu_workers_write_the_single_process_dataset(label_runs):
    """YOLO here; the killed-worker test below compares a COCO dataset."""
    workers = label_runs.label("workers-yolo", "--format", "yolo", "--devices", "cpu:2")
    assert workers.returncode == 1, workers.stderr
    reference, reference_run = label_runs.single("yolo")  # made meanwhile, see scale_out.py
    assert summary_lines(workers.stdout) == summary_lines(reference_run.stdout)
    assert normalized_dataset(label_runs.root / "workers-yolo") == normalized_dataset(reference)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the workers through /proc")
def test_a_killed_worker_is_started_again_and_the_dataset_is_the_same(label_runs):
    output = label_runs.root / "killed-worker"
    process = label_runs.label(output.name, "--format", "coco", "--devices", "cpu:2",
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until_written(process, output, ".work/*.json")
    victims = worker_pids(process.pid)
    assert victims, "no worker found"
    os.kill(victims[0], signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 1, stderr
    reference, reference_run = label_runs.single("coco")
    assert summary_lines(stdout) == summary_lines(reference_run.stdout)
    assert normalized_dataset(output) == normalized_dataset(reference)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the workers through /proc")
def test_a_killed_parent_leaves_no_worker_and_the_command_resumes_to_the_same_dataset(label_runs):
    output = label_runs.root / "killed-parent"
    options = ("--format", "coco", "--devices", "cpu:2")
    process = label_runs.label(output.name, *options, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until_written(process, output, ".work/*.json")
    workers = worker_pids(process.pid)
    assert workers, "no worker found"
    process.kill()
    process.communicate(timeout=60)
    deadline = time.time() + 30
    while any(command_line(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(command_line(pid) for pid in workers), "a worker outlived its parent"
    resumed = label_runs.label(output.name, *options)
    assert resumed.returncode == 1, resumed.stderr
    assert " 0 already done" not in resumed.stdout
    reference, _ = label_runs.single("coco")
    assert normalized_dataset(output) == normalized_dataset(reference)


PARENT = """
import multiprocessing, time
from grounded_sam2.parallel import exit_with_parent

def idle_worker(tasks):
    exit_with_parent()
    tasks.get()  # blocks: nothing will ever come

if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    worker = context.Process(target=idle_worker, args=(context.Queue(),), daemon=True)
    worker.start()
    print(worker.pid, flush=True)
    time.sleep(120)
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="watches the worker through /proc")
def test_an_idle_worker_ends_when_its_parent_is_killed(tmp_path):
    """A worker blocked on its task queue would otherwise outlive a SIGKILLed parent forever."""
    (tmp_path / "parent.py").write_text(PARENT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py")], stdout=subprocess.PIPE, text=True, env=env)
    worker = int(parent.stdout.readline())
    time.sleep(1)
    parent.kill()
    parent.wait()
    deadline = time.time() + 20
    while command_line(worker) and time.time() < deadline:
        time.sleep(0.1)
    alive = bool(command_line(worker))
    if alive:
        os.kill(worker, signal.SIGKILL)
    assert not alive, "the worker outlived its parent"


@pytest.mark.parametrize("command, options, message", [
    ("label", ["--devices", "cpu:2", "--device", "cpu"], "--devices goes without --device and --ray"),
    ("label", ["--devices", "cpu:2", "--ray"], "--devices goes without --device and --ray"),
    ("label", ["--workers", "2"], "--workers is the number of Ray actors: it goes with --ray"),
    ("label-video", ["--devices", "cpu:2", "--device", "cpu"], "give either --device or --devices, not both"),
])
def test_conflicting_scale_out_options_are_refused_before_anything_is_created(command, options, message, tmp_path,
                                                                               capsys):
    from grounded_sam2.cli import main

    (tmp_path / "in").mkdir()
    code = main([command, str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--ontology", "example", *options])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
